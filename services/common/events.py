"""Event delivery: at least once from the outbox to idempotent consumers, via Redis Streams or in-process."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from sqlalchemy import Column, DateTime, MetaData, String, Table, Uuid, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database
from services.common.fields import utcnow


@dataclass(frozen=True)
class Event:
    """One fact a write recorded in its outbox."""

    id: str
    tenant_id: str
    topic: str
    payload: dict[str, Any]


Handler = Callable[[Event], Awaitable[None]]
WritingHandler = Callable[[AsyncConnection, Event], Awaitable[None]]


class Bus(Protocol):
    """Carries events from a service's dispatcher to its consumers."""

    async def publish(self, events: Sequence[Event]) -> None: ...

    def subscribe(self, group: str, topics: set[str], handler: Handler) -> None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...


class LocalBus:
    """In-process delivery: publishing calls every matching consumer before the outbox row is marked."""

    def __init__(self) -> None:
        self._subscribers: list[tuple[set[str], Handler]] = []

    async def publish(self, events: Sequence[Event]) -> None:
        for event in events:
            for topics, handler in self._subscribers:
                if event.topic in topics:
                    await handler(event)

    def subscribe(self, group: str, topics: set[str], handler: Handler) -> None:
        self._subscribers.append((topics, handler))

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def close(self) -> None:
        return None


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
        self._groups: list[tuple[str, set[str], Handler]] = []

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

    def subscribe(self, group: str, topics: set[str], handler: Handler) -> None:
        self._groups.append((group, topics, handler))

    async def run(self) -> None:
        await asyncio.gather(*(self._consume(*group) for group in self._groups))

    async def _consume(self, group: str, topics: set[str], handler: Handler) -> None:
        while True:
            try:
                await self._ensure_group(group)
                await self._drain(group, topics, handler, "0")  # what this consumer had but never acked
                while True:
                    await self._claim(group, topics, handler)
                    await self._drain(group, topics, handler, ">", block_ms=1000)
            except Exception as error:  # never let one failure end the consumer: back off, re-read pending
                self._log.warning(
                    "event consumer failed; retrying", extra={"group": group, "error": type(error).__name__}
                )
                await asyncio.sleep(1)

    async def _ensure_group(self, group: str) -> None:
        try:
            await self._redis.xgroup_create(self._stream, group, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def _drain(
        self, group: str, topics: set[str], handler: Handler, start: str, block_ms: int = 0
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

    async def _claim(self, group: str, topics: set[str], handler: Handler) -> None:
        result = await self._redis.xautoclaim(
            self._stream, group, self._consumer, self._claim_idle_ms, start_id="0-0", count=50
        )
        claimed: list[Any] = result[1]  # type: ignore[assignment]
        if claimed:
            await self._handle(group, topics, handler, claimed)

    async def _handle(self, group: str, topics: set[str], handler: Handler, entries: list[Any]) -> None:
        done = []
        try:
            for entry_id, fields in entries:
                if fields:  # an entry trimmed away leaves only its id
                    data = {k.decode(): v.decode() for k, v in fields.items()}
                    if data["topic"] in topics:
                        event = Event(
                            data["id"], data["tenant_id"], data["topic"], json.loads(data["payload"])
                        )
                        await handler(event)
                done.append(entry_id)
        finally:
            if done:  # one acknowledgement for everything handled, even when a later entry failed
                await self._redis.xack(self._stream, group, *done)

    async def close(self) -> None:
        await self._redis.aclose()


def inbox_table(metadata: MetaData) -> Table:
    """processed_events: which consumer already handled which event (the idempotency record)."""
    return Table(
        "processed_events",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", Uuid, primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )


def idempotent(db: Database, inbox: Table, consumer: str, handler: Handler) -> Handler:
    """Runs `handler` at most once per event: its record commits together with the handling."""
    return idempotent_writer(db, inbox, consumer, lambda _conn, event: handler(event))


def idempotent_writer(db: Database, inbox: Table, consumer: str, handler: WritingHandler) -> Handler:
    """Like idempotent, for handlers that write to this database too: in the record's transaction."""

    async def handle(event: Event) -> None:
        event_id = uuid.UUID(event.id)
        try:
            async with db.transaction() as conn:
                done = await conn.execute(
                    select(inbox.c.event_id).where(inbox.c.consumer == consumer, inbox.c.event_id == event_id)
                )
                if done.first() is not None:
                    return
                await conn.execute(
                    insert(inbox).values(consumer=consumer, event_id=event_id, processed_at=utcnow())
                )
                await handler(conn, event)
        except IntegrityError:
            return  # another delivery of the same event committed first

    return handle


class Dispatcher:
    """Moves outbox rows to the bus, oldest first, marking them only after the bus took them."""

    def __init__(
        self, *, db: Database, outbox: Table, bus: Bus, logger: logging.Logger, idle_seconds: float = 0.1
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._bus = bus
        self._log = logger
        self._idle = idle_seconds
        self.batch = 100

    async def dispatch_once(self, batch: int = 100) -> int:
        """Publishes one batch of pending events; returns how many."""
        table = self._outbox
        query = select(table).where(table.c.dispatched_at.is_(None)).order_by(table.c.created_at).limit(batch)
        if self._db.dialect == "postgresql":
            query = query.with_for_update(skip_locked=True)  # replicas share the outbox
        async with self._db.transaction() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return 0
            await self._bus.publish(
                [Event(str(r.id), str(r.tenant_id), r.topic, json.loads(r.payload)) for r in rows]
            )
            await conn.execute(
                update(table).where(table.c.id.in_([r.id for r in rows])).values(dispatched_at=utcnow())
            )
        return len(rows)

    async def run(self) -> None:
        """Dispatches until cancelled; failures are logged and retried with backoff."""
        backoff = self._idle
        while True:
            try:
                full = await self.dispatch_once(self.batch) == self.batch
                backoff = self._idle
            except Exception as error:  # any failure: the rows stay pending and are retried
                self._log.warning("dispatch failed; will retry", extra={"error": type(error).__name__})
                full, backoff = False, min(backoff * 2, 5.0)
            if not full:
                # Let events gather: a few larger batches cost far less than one transaction per event.
                await asyncio.sleep(backoff)
