"""The gatekeeper's RESP encoding and reply parsing, including replies split across reads."""

import pytest

from edge.gatekeeper.resp import ReplyError, _Incomplete, encode, parse, split_url


def test_commands_are_arrays_of_bulk_strings() -> None:
    assert encode("EVALSHA", b"ab", 1, "k") == b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$1\r\nk\r\n"
    assert encode("SET", "é") == b"*2\r\n$3\r\nSET\r\n$2\r\n\xc3\xa9\r\n"


@pytest.mark.parametrize(
    ("wire", "reply"),
    [
        (b":42\r\n", 42),
        (b":-1\r\n", -1),
        (b"+OK\r\n", "OK"),
        (b"$5\r\nhe\r\no\r\n", b"he\r\no"),  # a bulk string may hold CRLF
        (b"$0\r\n\r\n", b""),
        (b"$-1\r\n", None),
        (b"*-1\r\n", None),
        (b"*3\r\n:1\r\n:24\r\n:0\r\n", [1, 24, 0]),
        (b"*2\r\n*1\r\n$1\r\na\r\n:7\r\n", [[b"a"], 7]),
    ],
)
def test_each_reply_kind_parses_whole_and_not_before_it_is_whole(wire: bytes, reply: object) -> None:
    assert parse(wire) == (reply, len(wire))
    for cut in range(len(wire)):
        with pytest.raises(_Incomplete):
            parse(wire[:cut])


def test_errors_are_returned_and_replies_read_back_to_back() -> None:
    wire = b"-NOSCRIPT No matching script\r\n:5\r\n"
    error, position = parse(wire)
    assert isinstance(error, ReplyError) and str(error).startswith("NOSCRIPT")
    assert parse(wire, position) == (5, len(wire))


def test_garbage_is_a_connection_error() -> None:
    with pytest.raises(ConnectionError):
        parse(b"?what\r\n")


@pytest.mark.parametrize("url", ["http://redis:6379", "redis://", "unix:///tmp/redis.sock"])
def test_only_redis_urls_with_a_host_are_accepted(url: str) -> None:
    with pytest.raises(ValueError, match="HYDRA_REDIS_URL"):
        split_url(url)
    assert split_url("rediss://:pw@cache:6380/2").port == 6380
