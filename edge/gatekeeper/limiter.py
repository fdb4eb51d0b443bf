"""Sliding windows (one minute unless a hit says otherwise): exact (a log of hits), in Redis when
configured, else in-process."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, cast

from edge.gatekeeper.resp import ReplyError, RespConnection, split_url
from services.common import metrics

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Verdict:
    """The answer for one hit: allowed or not, the limit, what is left, and when to retry."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: int  # whole seconds; 0 when allowed
    reset_after: float = 0.0  # seconds until the oldest hit counted leaves the window (one more is free)


class Limiter(Protocol):
    """Counts a hit against a window and decides."""

    async def hit(self, key: str, limit: int, window: float = WINDOW_SECONDS) -> Verdict: ...

    async def close(self) -> None: ...


def counted(verdict: Verdict, store: str) -> Verdict:
    """The verdict, counted in the process's metrics by outcome and where its window is kept."""
    metrics.RATE_LIMITS.labels("admitted" if verdict.allowed else "limited", store).inc()
    return verdict


class MemoryLimiter:
    """One deque of hit times per key; only this process sees it."""

    def __init__(self, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._longest = window
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._last_sweep = clock()

    async def hit(self, key: str, limit: int, window: float | None = None) -> Verdict:
        return counted(self.hit_now(key, limit, window), "in_process")

    def hit_now(self, key: str, limit: int, window: float | None = None) -> Verdict:
        """Decides synchronously (the in-process path needs no await)."""
        window = self._window if window is None else window
        self._longest = max(self._longest, window)
        now = self._clock()
        self._sweep(now)
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - window:
            hits.popleft()
        if len(hits) < limit:
            hits.append(now)
            return Verdict(True, limit, limit - len(hits), 0, hits[0] + window - now)
        reset = hits[0] + window - now
        return Verdict(False, limit, 0, max(1, math.ceil(reset)), reset)

    def _sweep(self, now: float) -> None:
        # Drop idle keys now and then so memory follows active keys, not every key ever seen.
        if now - self._last_sweep < self._window:
            return
        self._last_sweep = now
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self._longest]:
            del self._hits[key]

    async def close(self) -> None:
        return None


# One round trip, atomic: trim the window, count, and record the hit only if allowed.
# Time comes from Redis so every gatekeeper shares one clock.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. now)
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {1, limit - count - 1, 0, tonumber(first[2]) + window - now}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = tonumber(oldest[2]) + window - now
return {0, 0, reset, reset}
"""


class RedisLimiter:
    """Windows in Redis, shared by every gatekeeper; falls back to in-process while Redis is down."""

    def __init__(
        self,
        url: str,
        logger: logging.Logger,
        window: float = WINDOW_SECONDS,
        *,
        timeout: float = 0.5,
        retry_interval: float = 1.0,
    ) -> None:
        self._url = url
        split_url(url)  # a malformed URL stops start-up rather than every check
        self._timeout = timeout
        self._retry_interval = retry_interval
        self._script = _SLIDING_WINDOW.encode()
        self._sha = hashlib.sha1(self._script).hexdigest()
        self._window = window
        self._fallback = MemoryLimiter(window)
        self._log = logger
        self._degraded = False
        self._token = os.urandom(6).hex()
        self._sequence = 0
        self._connection: RespConnection | None = None
        self._connecting: asyncio.Lock = asyncio.Lock()
        self._next_attempt = 0.0

    async def hit(self, key: str, limit: int, window: float | None = None) -> Verdict:
        window = self._window if window is None else window
        self._sequence += 1
        member = f"{self._token}{self._sequence}"
        args = (1, f"hydra:rl:{key}", int(window * 1_000_000), limit, member)
        try:
            async with asyncio.timeout(self._timeout):
                connection = await self._connect()
                reply = await connection.call("EVALSHA", self._sha, *args)
                if isinstance(reply, ReplyError) and str(reply).startswith("NOSCRIPT"):
                    reply = await connection.call("EVAL", self._script, *args)  # loads it for next time
            if isinstance(reply, ReplyError):
                raise reply
            allowed, remaining, retry_us, reset_us = cast(list[int], reply)
        except (TimeoutError, ReplyError, OSError, ValueError, TypeError) as error:
            self._drop()
            if not self._degraded:
                self._log.error(
                    "redis unreachable, limiting in-process", extra={"error": type(error).__name__}
                )
                self._degraded = True
            return counted(self._fallback.hit_now(key, limit, window), "fallback")
        if self._degraded:
            self._log.warning("redis reachable again, limiting in redis")
            self._degraded = False
        retry = 0 if allowed else max(1, math.ceil(retry_us / 1_000_000))
        return counted(Verdict(bool(allowed), limit, remaining, retry, reset_us / 1_000_000), "redis")

    async def _connect(self) -> RespConnection:
        """The shared connection, opened when missing (after a failed attempt, none for a retry interval)."""
        if self._connection is not None and not self._connection.closed:
            return self._connection
        async with self._connecting:
            if self._connection is not None and not self._connection.closed:
                return self._connection
            if time.monotonic() < self._next_attempt:
                raise ConnectionError("redis was unreachable moments ago")
            try:
                self._connection = await RespConnection.open(self._url)
            except BaseException:  # timed out too: checks meanwhile go in-process without waiting
                self._next_attempt = time.monotonic() + self._retry_interval
                raise
            return self._connection

    def _drop(self) -> None:
        # A connection whose reply timed out is out of step with its callers: start over.
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self._drop()
