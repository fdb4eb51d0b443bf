"""The inbox: which consumer handled which event, so each one handles an event once, however often sent."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table, Uuid, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database
from services.common.events.bus import BatchHandler, Event
from services.common.events.faults import EventFailed, Unfinished
from services.common.fields import utcnow

Handler = Callable[[Event], Awaitable[None]]
WritingHandler = Callable[[AsyncConnection, Event], Awaitable[None]]
# A consumer's handling of a batch: how many of its events it handled now (not those handled before).
CountingHandler = Callable[[Sequence[Event]], Awaitable[int]]


def inbox_table(metadata: MetaData) -> Table:
    """processed_events: which consumer already handled which event (the idempotency record)."""
    return Table(
        "processed_events",
        metadata,
        Column("consumer", String(100), primary_key=True),
        Column("event_id", Uuid, primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False),
        Index(None, "processed_at"),  # Retention finds the old records through it
    )


def _claim_statement(db: Database, inbox: Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING event_id: claims the events no delivery claimed before."""
    dialect_insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    return dialect_insert(inbox).on_conflict_do_nothing().returning(inbox.c.event_id)


async def _claim(conn: AsyncConnection, claim: Any, consumer: str, events: Sequence[Event]) -> list[Event]:
    """The events this consumer has not handled yet, now recorded as handled (in the caller's
    transaction). A concurrent delivery of the same event waits here until the other one ends."""
    now = utcnow()
    # A redelivered event can arrive in the same batch as its first delivery: claim it once.
    unique = list({event.id: event for event in events}.values())
    rows = [{"consumer": consumer, "event_id": uuid.UUID(e.id), "processed_at": now} for e in unique]
    claimed = {row.event_id for row in await conn.execute(claim, rows)}
    return [event for event in unique if uuid.UUID(event.id) in claimed]


def idempotent_batch(db: Database, inbox: Table, consumer: str, work: BatchHandler) -> CountingHandler:
    """Runs `work` on the events of each batch not handled before, recording them in one transaction;
    returns how many it handled.

    If `work` raises Unfinished, the events it finished stay recorded, the rest are released for a
    later delivery, and EventFailed names the event it stopped at; any other error releases the
    whole batch and is raised as it is (which event failed is not known).
    """
    claim = _claim_statement(db, inbox)

    async def handle(events: Sequence[Event]) -> int:
        if not events:
            return 0
        failure: BaseException | None = None
        async with db.transaction() as conn:
            fresh = await _claim(conn, claim, consumer, events)
            if not fresh:
                return 0
            try:
                await work(fresh)
            except Exception as error:
                failure = error
                done = error.done if isinstance(error, Unfinished) else 0
                released = [uuid.UUID(e.id) for e in fresh[done:]]
                await conn.execute(
                    delete(inbox).where(inbox.c.consumer == consumer, inbox.c.event_id.in_(released))
                )
        if isinstance(failure, Unfinished) and failure.done < len(fresh):
            raise EventFailed(fresh[failure.done], failure.cause, handled=failure.done) from failure.cause
        if failure is not None:
            if len(fresh) == 1:
                raise EventFailed(fresh[0], failure) from failure
            raise failure
        return len(fresh)

    return handle


def idempotent(db: Database, inbox: Table, consumer: str, handler: Handler) -> CountingHandler:
    """Runs `handler` at most once per event: its record commits together with the handling."""

    async def each(events: Sequence[Event]) -> None:
        for done, event in enumerate(events):
            try:
                await handler(event)
            except Exception as error:
                raise Unfinished(done, error) from error

    return idempotent_batch(db, inbox, consumer, each)


def idempotent_writer(db: Database, inbox: Table, consumer: str, handler: WritingHandler) -> CountingHandler:
    """Like idempotent, for handlers that write to this database too: each event in its own transaction
    with its record, so one failing write cannot undo the others."""
    claim = _claim_statement(db, inbox)

    async def handle(events: Sequence[Event]) -> int:
        handled = 0
        for event in events:
            fresh = False
            try:
                async with db.transaction() as conn:
                    if fresh := bool(await _claim(conn, claim, consumer, [event])):
                        await handler(conn, event)
            except Exception as error:
                raise EventFailed(event, error, handled=handled) from error
            handled += fresh
        return handled

    return handle
