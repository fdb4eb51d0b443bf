"""The gatekeeper's HTTP/1.1 check listener, over real sockets: framing, order, answers, bad input."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable

import pytest

from edge.gatekeeper.authorizer import Authorizer
from edge.gatekeeper.http_check import CheckProtocol, parse_head, route_access
from edge.gatekeeper.key_store import KeyRecord
from edge.gatekeeper.limiter import MemoryLimiter

TENANT = uuid.uuid4()
READER = KeyRecord(uuid.uuid4(), TENANT, "hmcp", frozenset({"crm:read"}), 2, None)
BUSY = KeyRecord(uuid.uuid4(), TENANT, "hmcp", frozenset({"crm:read"}), 100, None)
ROUTE = (
    "x-hydra-route-surface: support\r\nx-hydra-route-auth: support_key\r\nx-hydra-route-scope: crm:read\r\n"
)


class Store:
    """Knows one key; fails for the secret 'hmcp_broken'."""

    async def find(self, secret: str, *, load: bool = True) -> KeyRecord | None:
        if secret == "hmcp_broken":
            raise ConnectionError("database went away")
        return {"hmcp_reader": READER, "hmcp_busy": BUSY}.get(secret)

    def touch(self, record: KeyRecord) -> None:
        return None


def request(secret: str, *, extra: str = "") -> bytes:
    head = f"GET /api/v1/leads HTTP/1.1\r\nhost: authz\r\nauthorization: Bearer {secret}\r\n"
    return f"{head}{ROUTE}{extra}\r\n".encode()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:] if line)
    body = await reader.readexactly(int(headers["content-length"]))
    return int(head[0].split(" ")[1]), headers, body


def with_server(test: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]) -> None:
    async def main() -> None:
        authorizer = Authorizer(store=Store(), limiter=MemoryLimiter())  # type: ignore[arg-type]
        log = logging.getLogger("test")
        server = await asyncio.get_running_loop().create_server(
            lambda: CheckProtocol(authorizer, log), "127.0.0.1", 0
        )
        async with server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
            try:
                await asyncio.wait_for(test(reader, writer), timeout=5)
            finally:
                writer.close()

    asyncio.run(main())


def test_route_policy_comes_from_the_route_headers() -> None:
    route = route_access(
        {
            "x-hydra-route-surface": "public",
            "x-hydra-route-auth": "widget_token",
            "x-hydra-route-scope": "chat:write",
            "x-hydra-route-requests-per-minute": "30",
            "x-hydra-route-limit-name": "chat",
            "x-hydra-route-instance-segment": "3",
            "authorization": "Bearer x",
        }
    )
    assert (
        route.surface.name,
        route.credential.name,
        route.scope,
        route.requests_per_minute,
        route.limit_name,
        route.instance_segment,
    ) == (
        "public",
        "widget_token",
        "chat:write",
        30,
        "chat",
        3,
    )


def test_requests_on_one_connection_are_answered_in_order() -> None:
    async def test(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Three requests in one write, the last split across two: answers come back in the same order.
        wire = request("hmcp_reader") + request("hmcp_unknown") + request("hmcp_reader")
        writer.write(wire[:-7])
        await writer.drain()
        writer.write(wire[-7:])
        first, second, third = [await read_response(reader) for _ in range(3)]
        assert first[0] == 200
        assert first[1]["x-hydra-tenant-id"] == str(TENANT)
        assert first[1]["x-hydra-scopes"] == "crm:read"
        assert first[1]["x-envoy-auth-headers-to-remove"] == "x-hydra-instance-id,x-hydra-user-id"
        assert first[1]["x-ratelimit-remaining"] == "1"
        assert second[0] == 401
        assert json.loads(second[2]) == {"error": "Invalid or revoked API key.", "code": "unauthorized"}
        assert second[1]["content-type"] == "application/json"
        assert third[0] == 200 and third[1]["x-ratelimit-remaining"] == "0"

    with_server(test)


def test_rate_limited_answer_carries_retry_after() -> None:
    async def test(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(request("hmcp_reader") * 3)
        statuses = [await read_response(reader) for _ in range(3)]
        assert [s[0] for s in statuses] == [200, 200, 429]
        assert int(statuses[2][1]["retry-after"]) >= 1
        assert json.loads(statuses[2][2])["code"] == "rate_limited"

    with_server(test)


def test_a_failing_key_store_is_a_503_and_the_connection_stays_usable() -> None:
    async def test(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(request("hmcp_broken") + request("hmcp_reader"))
        broken, fine = await read_response(reader), await read_response(reader)
        assert broken[0] == 503
        assert "temporarily unavailable" in json.loads(broken[2])["error"]
        assert fine[0] == 200

    with_server(test)


def test_connection_close_is_honoured_after_the_answer() -> None:
    async def test(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(request("hmcp_reader", extra="connection: close\r\n") + request("hmcp_reader"))
        assert (await read_response(reader))[0] == 200
        assert await reader.read() == b""  # closed: the request after it is not answered

    with_server(test)


@pytest.mark.parametrize(
    ("wire", "status"),
    [
        (b"NONSENSE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nx-big: " + b"a" * 70_000, 431),
    ],
)
def test_malformed_input_is_refused_and_the_connection_closed(wire: bytes, status: int) -> None:
    async def test(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(wire)
        assert (await read_response(reader))[0] == status
        assert await reader.read() == b""

    with_server(test)


def test_a_body_is_read_whole_before_the_next_request() -> None:
    head, length = parse_head(b"POST /x HTTP/1.1\r\ncontent-length: 5\r\nA: 1\r\na: 2")
    assert (head.path, length, head.headers["a"]) == ("/x", 5, "1,2")

    async def test(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body_first = request("hmcp_reader", extra="content-length: 5\r\n") + b"hello"
        writer.write(body_first + request("hmcp_reader"))
        assert [(await read_response(reader))[0] for _ in range(2)] == [200, 200]

    with_server(test)


CORE_ROUTE = (
    "x-hydra-route-surface: core\r\nx-hydra-route-auth: support_key\r\nx-hydra-route-scope: crm:read\r\n"
)


def core_check(body: bytes, *, extra: str = "") -> bytes:
    head = f"POST /v1/things HTTP/1.1\r\nhost: authz\r\nauthorization: Bearer hmcp_busy\r\n{CORE_ROUTE}"
    return f"{head}content-length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_a_body_on_a_surface_that_checks_json_is_refused_as_fastapi_refuses_it() -> None:
    async def test(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(core_check(b'{"a": 1,}'))
        status, _, body = await read_response(reader)
        assert status == 422
        assert json.loads(body)["detail"] == [
            {
                "loc": ["body", 8],
                "msg": "JSON decode error",
                "type": "json_invalid",
                "input": {},
                "ctx": {"error": "Expecting property name enclosed in double quotes"},
            }
        ]
        # Sent in pieces, as a socket may deliver it; a partial body is not judged.
        whole = core_check(b'{"a": 1}')
        writer.write(whole[:10])
        await writer.drain()
        writer.write(whole[10:] + core_check(b'{"a": ', extra="x-envoy-auth-partial-body: true\r\n"))
        assert [(await read_response(reader))[0] for _ in range(2)] == [200, 200]
        # Nested past the parser's depth: not judged here, and the connection goes on answering.
        writer.write(core_check(b"[" * 200_000) + core_check(b"{}"))
        assert [(await read_response(reader))[0] for _ in range(2)] == [200, 200]
        writer.write(core_check(b'"\xff"'))
        status, _, body = await read_response(reader)
        assert (status, json.loads(body)) == (400, {"detail": "There was an error parsing the body"})

    with_server(test)
