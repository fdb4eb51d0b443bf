"""An open-loop load generator: requests start on a fixed schedule, whether or not earlier ones finished.

wrk keeps a fixed number of connections busy, so its latency is whatever queue those connections
build (Little's law: connections / throughput). A target such as "p99 at 500 req/s" is a question
about a given arrival rate; here each request is due at start + i / rate and its latency counts from
that moment, so a stalled server cannot slow the schedule down and hide its own delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

import uvloop


class _Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> int:
        """Sends one request and reads its whole answer; returns the status code."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")  # LimitOverrunError past 64 KiB
        status_line, _, rest = head.partition(b"\r\n")
        length = 0
        for line in rest.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1])

    def close(self) -> None:
        self.writer.close()


class _Requests:
    """The requests of one run: the fixed head is built once, only the numbered parts per request."""

    def __init__(self, url: str, headers: Mapping[str, str], body: str | None, clients: int) -> None:
        parts = urlsplit(url)
        method = "POST" if body is not None else "GET"
        lines = [f"{method} {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1"]
        lines.append(f"Host: {parts.netloc}")
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if body is not None:
            lines.append("Content-Type: application/json")
        self._head = "\r\n".join(lines) + "\r\n"
        self._body = body
        self._clients = clients

    def number(self, n: int) -> bytes:
        """Request `n`: its body numbered, from its own forwarded client address when spread."""
        extra = ""
        if self._clients:  # many visitors behind one trusted proxy, as bench/post_json.lua does for wrk
            c = n % self._clients
            extra = f"X-Forwarded-For: 10.{c >> 16 & 255}.{c >> 8 & 255}.{c & 255}\r\n"
        if self._body is None:
            return (self._head + extra + "\r\n").encode()
        payload = self._body.replace("{n}", str(n)).encode()
        return (self._head + extra + f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


class _Pool:
    """Keep-alive connections to one address, opened as needed up to a limit."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self._host, self._port, self._limit = host, port, limit
        self._idle: list[_Connection] = []
        self._freed = asyncio.Condition()
        self.opened = 0
        self.most = 0

    async def take(self) -> _Connection:
        async with self._freed:
            while not self._idle and self.opened >= self._limit:
                await self._freed.wait()
            if self._idle:
                return self._idle.pop()
            self.opened += 1
            self.most = max(self.most, self.opened)
        try:
            return _Connection(*await asyncio.open_connection(self._host, self._port))
        except OSError:
            await self.lost(None)
            raise

    async def give_back(self, conn: _Connection) -> None:
        async with self._freed:
            self._idle.append(conn)
            self._freed.notify()

    async def lost(self, conn: _Connection | None) -> None:
        if conn is not None:
            conn.close()
        async with self._freed:
            self.opened -= 1
            self._freed.notify()

    def close(self) -> None:
        for conn in self._idle:
            conn.close()


@contextlib.contextmanager
def _no_collector_pauses() -> Iterator[None]:
    """No cyclic garbage collection while the run lasts. A full collection stalled the generator for
    100 to 200 ms, and every request due meanwhile counted that stall as the server's latency (at
    500 req/s, enough requests to be the whole p99). What a run allocates is freed by reference
    counting; the few cycles wait until the end."""
    enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()


async def _run(
    url: str,
    headers: Mapping[str, str],
    *,
    rate: float,
    duration: float,
    body: str | None,
    clients: int,
    max_connections: int,
) -> dict[str, float]:
    parts = urlsplit(url)
    pool = _Pool(parts.hostname or "127.0.0.1", parts.port or 80, max_connections)
    requests = _Requests(url, headers, body, clients)
    latencies: list[float] = []
    late = 0.0  # the most the generator itself started a request after its due time
    failures = 0

    async def one(n: int, due: float) -> None:
        nonlocal failures, late
        late = max(late, time.perf_counter() - due)
        conn = None
        try:
            conn = await pool.take()
            status = await conn.exchange(requests.number(n))
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            failures += 1
            await pool.lost(conn)
            return
        latencies.append(time.perf_counter() - due)
        if not 200 <= status < 300:
            failures += 1
        await pool.give_back(conn)

    under_way: set[asyncio.Task[None]] = set()
    start = time.perf_counter() + 0.05
    for n in range(int(rate * duration)):
        due = start + n / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n, due))
        under_way.add(task)
        task.add_done_callback(under_way.discard)
    await asyncio.gather(*under_way)
    elapsed = time.perf_counter() - start
    pool.close()
    ordered = sorted(latencies)
    return {
        "rps": len(latencies) / elapsed,
        "p50": _percentile(ordered, 0.50) * 1000,
        "p90": _percentile(ordered, 0.90) * 1000,
        "p99": _percentile(ordered, 0.99) * 1000,
        "non_2xx": float(failures),
        "connections": float(pool.most),
        "late_max": late * 1000,
    }


def paced(
    url: str,
    key: str,
    *,
    rate: float,
    duration: float,
    body: str | None = None,
    clients: int = 0,
    max_connections: int = 256,
) -> dict[str, float]:
    """Sends `rate` requests per second for `duration` seconds (POSTing `body` when given, "{n}" numbered);
    returns req/s completed, p50/p90/p99 in ms counted from each request's due time, failed or non-2xx
    answers, how many connections it took, and the most (ms) it started a request late itself."""
    headers = {"Authorization": f"Bearer {key}"}
    run = _run(
        url,
        headers,
        rate=rate,
        duration=duration,
        body=body,
        clients=clients,
        max_connections=max_connections,
    )
    with _no_collector_pauses():
        return uvloop.run(run)
