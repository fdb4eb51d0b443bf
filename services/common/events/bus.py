"""The bus: carries events from a service's dispatcher to its consumers, via Redis Streams or in-process."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ResponseError


@dataclass(frozen=True)
class Event:
    """One fact a write recorded in its outbox."""

    id: str
    tenant_id: str
    topic: str
    payload: dict[str, Any]


BatchHandler = Callable[[Sequence[Event]], Awaitable[None]]


class Bus(Protocol):
    """Carries events from a service's dispatcher to its consumers, in batches."""

    async def publish(self, events: Sequence[Event]) -> None: ...

    def subscribe(self, group: str, topics: set[str], handler: BatchHandler) -> None: ...

    async def run(self) -> None: ...

    async def lag(self) -> dict[str, int]:
        """Entries each consumer group has yet to read or acknowledge, by group (none in-process)."""
        ...

    async def close(self) -> None: ...


class LocalBus:
    """In-process delivery: publishing calls every matching consumer before the outbox row is marked.

    A consumer settles each event itself (handled, or kept for a retry or as a dead letter), so a
    failing event never fails the publish; only a consumer that could not record its failures does,
    and then the others still had their turn and the batch is published again.
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[set[str], BatchHandler]] = []

    async def publish(self, events: Sequence[Event]) -> None:
        failure: Exception | None = None
        for topics, handler in self._subscribers:
            matching = [event for event in events if event.topic in topics]
            if matching:
                try:
                    await handler(matching)
                except Exception as error:
                    failure = failure or error
        if failure is not None:
            raise failure

    def subscribe(self, group: str, topics: set[str], handler: BatchHandler) -> None:
        self._subscribers.append((topics, handler))

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def lag(self) -> dict[str, int]:
        return {}  # publishing hands each event to its consumers before it returns

    async def close(self) -> None:
        return None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisStreamBus:
    """One stream per service; one consumer group per consumer, acked only after the handler succeeds.

    A consumer keeps a stable name (service@host:port), so after a crash and restart it first re-reads
    what it had received but not acked; entries another, dead consumer left idle are claimed too.
    """

    def __init__(
        self, url: str, *, stream: str, consumer: str, logger: logging.Logger, claim_idle_ms: int = 30_000
    ) -> None:
        self._redis = aioredis.from_url(url)
        self._stream = stream
        self._consumer = consumer
        self._log = logger
        self._claim_idle_ms = claim_idle_ms
        self._groups: list[tuple[str, set[str], BatchHandler]] = []

    async def publish(self, events: Sequence[Event]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in events:
                pipe.xadd(
                    self._stream,
                    {
                        "id": event.id,
                        "tenant_id": event.tenant_id,
                        "topic": event.topic,
                        "payload": json.dumps(event.payload),
                    },
                    maxlen=1_000_000,
                    approximate=True,
                )
            await pipe.execute()

    def subscribe(self, group: str, topics: set[str], handler: BatchHandler) -> None:
        self._groups.append((group, topics, handler))

    async def run(self) -> None:
        await asyncio.gather(*(self._consume(*group) for group in self._groups))

    async def ping(self) -> None:
        """Returns once Redis answers."""
        await self._redis.ping()

    async def lag(self) -> dict[str, int]:
        """Per group: entries not yet read (Redis 7's lag) plus those read and not yet acknowledged."""
        try:
            groups = await self._redis.xinfo_groups(self._stream)
        except ResponseError:  # no stream yet: nothing was ever published
            return {}
        return {_text(g["name"]): int(g.get("lag") or 0) + int(g.get("pending") or 0) for g in groups}

    async def _consume(self, group: str, topics: set[str], handler: BatchHandler) -> None:
        backoff = 1.0
        while True:
            try:
                await self._ensure_group(group)
                await self._drain(group, topics, handler, "0")  # what this consumer had but never acked
                backoff = 1.0
                while True:
                    await self._claim(group, topics, handler)
                    await self._drain(group, topics, handler, ">", block_ms=1000)
                    backoff = 1.0
            except (
                Exception
            ) as error:  # Redis or the database is down: back off, then re-read what is pending
                self._log.warning(
                    "event consumer failed; retrying", extra={"group": group, "error": type(error).__name__}
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _ensure_group(self, group: str) -> None:
        try:
            await self._redis.xgroup_create(self._stream, group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _drain(
        self, group: str, topics: set[str], handler: BatchHandler, start: str, block_ms: int = 0
    ) -> None:
        while True:
            batches = await self._redis.xreadgroup(
                group, self._consumer, {self._stream: start}, count=50, block=block_ms or None
            )
            entries: list[Any] = batches[0][1] if batches else []  # type: ignore[index,assignment]
            if not entries:
                return
            await self._handle(group, topics, handler, entries)
            if start == ">":
                return

    async def _claim(self, group: str, topics: set[str], handler: BatchHandler) -> None:
        result = await self._redis.xautoclaim(
            self._stream, group, self._consumer, self._claim_idle_ms, start_id="0-0", count=50
        )
        claimed: list[Any] = result[1]
        if claimed:
            await self._handle(group, topics, handler, claimed)

    async def _handle(self, group: str, topics: set[str], handler: BatchHandler, entries: list[Any]) -> None:
        """Hands the entries' events of `topics` to the handler at once; acks them all once it returned.

        The handler settles every event (handled, or recorded for a retry or as a dead letter); if it
        raises, it could not record that, so nothing is acked and the batch is read again later.
        """
        events = []
        for entry_id, fields in entries:
            if fields:  # an entry trimmed away leaves only its id
                event = self._decode(entry_id, fields)
                if event is not None and event.topic in topics:
                    events.append(event)
        if events:
            await handler(events)
        await self._redis.xack(self._stream, group, *(entry_id for entry_id, _ in entries))

    def _decode(self, entry_id: bytes, fields: dict[bytes, bytes]) -> Event | None:
        """The entry's event; None (logged, then acked with the rest) for one no dispatcher wrote."""
        try:
            data = {k.decode(): v.decode() for k, v in fields.items()}
            return Event(data["id"], data["tenant_id"], data["topic"], json.loads(data["payload"]))
        except (KeyError, ValueError) as error:
            self._log.error(
                "unreadable stream entry skipped",
                extra={"entry": entry_id.decode(errors="replace"), "error": type(error).__name__},
            )
            return None

    async def close(self) -> None:
        await self._redis.aclose()
