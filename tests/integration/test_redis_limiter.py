"""The gatekeeper's Redis windows against real Redis servers: auth, database, restarts, lost scripts."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis

from edge.gatekeeper.limiter import RedisLimiter
from testbed.servers import free_port, redis_server


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def log() -> tuple[logging.Logger, Captured]:
    logger = logging.getLogger(f"test.limiter.{id(object())}")
    handler = Captured()
    logger.addHandler(handler)
    return logger, handler


def test_concurrent_hits_on_one_connection_each_get_their_own_count(
    redis_url: str, log: tuple[logging.Logger, Captured]
) -> None:
    async def main() -> list[tuple[bool, int]]:
        limiter = RedisLimiter(redis_url, log[0])
        try:
            verdicts = await asyncio.gather(*(limiter.hit("crowd-one-connection", 30) for _ in range(50)))
        finally:
            await limiter.close()
        return [(v.allowed, v.remaining) for v in verdicts]

    verdicts = asyncio.run(main())
    assert sorted(r for allowed, r in verdicts if allowed) == list(range(30))
    assert [allowed for allowed, _ in verdicts].count(False) == 20
    assert log[1].messages == []


def test_password_and_database_from_the_url_are_used(log: tuple[logging.Logger, Captured]) -> None:
    with redis_server(password="s3cret") as url:
        in_db3 = url.replace("/0", "/3")

        async def main() -> list[bool]:
            limiter = RedisLimiter(in_db3, log[0])
            try:
                return [(await limiter.hit("auth", 2)).allowed for _ in range(3)]
            finally:
                await limiter.close()

        assert asyncio.run(main()) == [True, True, False]
        assert log[1].messages == []
        with redis.Redis.from_url(in_db3) as client:
            assert client.zcard("hydra:rl:auth") == 2

        async def wrong_password() -> bool:
            limiter = RedisLimiter(url.replace("s3cret", "nope"), log[0])
            try:
                return (await limiter.hit("auth", 2)).allowed
            finally:
                await limiter.close()

        assert asyncio.run(wrong_password()) is True  # in-process, and said so
        assert log[1].messages == ["redis unreachable, limiting in-process"]


def test_a_restarted_redis_is_used_again_and_a_flushed_script_reloaded(
    log: tuple[logging.Logger, Captured],
) -> None:
    port = free_port()

    async def main() -> None:
        limiter = RedisLimiter(f"redis://127.0.0.1:{port}/0", log[0], retry_interval=0.2)
        try:
            with redis_server(port=port) as url:
                assert (await limiter.hit("restart", 100)).remaining == 99
            assert (await limiter.hit("restart", 100)).allowed  # Redis gone: in-process
            with redis_server(port=port) as url:
                await asyncio.sleep(0.3)
                assert (await limiter.hit("restart", 100)).remaining == 99  # a fresh Redis counts anew
                with redis.Redis.from_url(url) as client:
                    client.script_flush()
                    assert (await limiter.hit("restart", 100)).remaining == 98
                    assert client.zcard("hydra:rl:restart") == 2
        finally:
            await limiter.close()

    asyncio.run(main())
    assert log[1].messages == [
        "redis unreachable, limiting in-process",
        "redis reachable again, limiting in redis",
    ]
