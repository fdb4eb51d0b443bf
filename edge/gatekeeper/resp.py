"""A pipelined Redis connection (RESP2) for the gatekeeper's per-request call.

redis-py's asyncio client spends about 90 µs of CPU per command on pooling, retries and timeouts,
two thirds of a whole check. Here every caller writes its command on one shared connection at once
and the replies, which Redis sends in order, resolve the callers' futures in order.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import cast
from urllib.parse import SplitResult, unquote, urlsplit

Reply = int | bytes | str | list["Reply"] | None


class ReplyError(Exception):
    """Redis answered the command with an error (-ERR, -NOSCRIPT, ...)."""


class _Incomplete(Exception):
    """The buffer ends inside a reply."""


def encode(*parts: bytes | str | int) -> bytes:
    """One command as a RESP array of bulk strings."""
    chunks = [b"*%d\r\n" % len(parts)]
    for part in parts:
        raw = part if isinstance(part, bytes) else str(part).encode()
        chunks.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(chunks)


def parse(buffer: bytes | bytearray, start: int = 0) -> tuple[Reply | ReplyError, int]:
    """The reply that begins at `start` and where it ends; _Incomplete if it has not all arrived."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise _Incomplete
    kind, line, position = buffer[start], bytes(buffer[start + 1 : end]), end + 2
    if kind == ord(":"):
        return int(line), position
    if kind == ord("+"):
        return line.decode(), position
    if kind == ord("-"):
        return ReplyError(line.decode(errors="replace")), position
    if kind == ord("$"):
        length = int(line)
        if length < 0:
            return None, position
        if len(buffer) < position + length + 2:
            raise _Incomplete
        return bytes(buffer[position : position + length]), position + length + 2
    if kind == ord("*"):
        count = int(line)
        if count < 0:
            return None, position
        items: list[Reply] = []
        for _ in range(count):
            item, position = parse(buffer, position)
            if isinstance(item, ReplyError):
                raise ConnectionError(f"error inside an array reply: {item}")
            items.append(item)
        return items, position
    raise ConnectionError(f"not a RESP reply: {bytes(buffer[start : start + 20])!r}")


def split_url(url: str) -> SplitResult:
    """The parts of a redis:// or rediss:// URL; ValueError for anything else."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ValueError(f"HYDRA_REDIS_URL must look like redis://host:port/db, got {url!r}")
    return parts


class RespConnection(asyncio.Protocol):
    """One connection; `call` may be used by many tasks at once."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiting: deque[asyncio.Future[Reply | ReplyError]] = deque()
        self.closed = False

    @classmethod
    async def open(cls, url: str) -> RespConnection:
        """Connects to redis://[user:password@]host[:port][/db] (rediss:// for TLS), authenticated."""
        parts = split_url(url)
        _, connection = await asyncio.get_running_loop().create_connection(
            cls,
            cast(str, parts.hostname),
            parts.port or 6379,
            ssl=ssl.create_default_context() if parts.scheme == "rediss" else None,
        )
        try:
            if parts.password is not None:
                credentials = [unquote(parts.username or "default"), unquote(parts.password)]
                await connection.call_checked("AUTH", *credentials)
            database = parts.path.strip("/")
            if database and database != "0":
                await connection.call_checked("SELECT", database)
        except BaseException:
            connection.close()
            raise
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = ConnectionError(f"redis connection lost: {exc}")
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        consumed = 0
        try:
            while consumed < len(self._buffer):
                reply, consumed = parse(self._buffer, consumed)
                waiter = self._waiting.popleft()
                if not waiter.done():  # its caller may have given up (timed out)
                    waiter.set_result(reply)
        except _Incomplete:
            pass
        except (ConnectionError, ValueError, IndexError):  # out of step: nothing after this can be trusted
            self.close()
            return
        del self._buffer[:consumed]

    def call(self, *parts: bytes | str | int) -> asyncio.Future[Reply | ReplyError]:
        """Sends one command now; the future resolves to its reply (a ReplyError is returned, not raised)."""
        if self.closed or self._transport is None:
            raise ConnectionError("redis connection is closed")
        waiter: asyncio.Future[Reply | ReplyError] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._transport.write(encode(*parts))
        return waiter

    async def call_checked(self, *parts: bytes | str | int) -> Reply:
        reply = await self.call(*parts)
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()
