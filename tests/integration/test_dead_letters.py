"""Poison events: retried a bounded number of times, then dead letters; they never hold up other events."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from services.common.db import Database
from services.common.events.bus import Event, LocalBus, RedisStreamBus
from services.common.events.dead_letters import Consumer, DeadLetterStore, RetryPolicy, dead_letter_table
from services.common.events.faults import PermanentError
from services.common.events.inbox import idempotent, inbox_table
from services.common.events.outbox import Dispatcher, Outbox, outbox_table

FAST = RetryPolicy(
    max_attempts=3, first_delay=dt.timedelta(milliseconds=20), max_delay=dt.timedelta(milliseconds=40)
)
LOG = logging.getLogger("test")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """An empty database on each backend."""
    if request.param == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'events.sqlite3'}", schema="public")
    return Database(request.getfixturevalue("postgres_url"), schema="public")


class Tables:
    def __init__(self) -> None:
        self.metadata = sa.MetaData()
        self.inbox = inbox_table(self.metadata)
        self.outbox = outbox_table(self.metadata)
        self.dead_letters = dead_letter_table(self.metadata)


def event(n: int = 0, topic: str = "ticket.created") -> Event:
    return Event(str(uuid.uuid4()), str(uuid.uuid4()), topic, {"n": n})


async def setup(db: Database) -> Tables:
    tables = Tables()
    async with db.engine.begin() as conn:
        await conn.run_sync(tables.metadata.create_all)
    return tables


def consumer(
    db: Database,
    tables: Tables,
    handler: Callable[[Event], Awaitable[None]],
    name: str = "test-consumer",
    policy: RetryPolicy = FAST,
) -> Consumer:
    store = DeadLetterStore(db, tables.dead_letters, max_attempts=policy.max_attempts)
    return Consumer(name, idempotent(db, tables.inbox, name, handler), store=store, policy=policy, logger=LOG)


async def rows(db: Database, tables: Tables) -> list[sa.Row]:
    async with db.read() as conn:
        return list((await conn.execute(sa.select(tables.dead_letters))).all())


async def retry_until(target: Consumer, done: Callable[[], Awaitable[bool]], rounds: int = 200) -> None:
    """Runs the consumer's retries as they come due until `done`."""
    for _ in range(rounds):
        if await done():
            return
        await asyncio.sleep(await target.retry_due())
    raise AssertionError("retries never finished")


def test_a_failing_event_is_retried_a_bounded_number_of_times_then_dead_and_the_others_go_on(
    db: Database,
) -> None:
    first, poison, last = event(1), event(2), event(3)
    calls: list[str] = []

    async def handle(e: Event) -> None:
        calls.append(e.id)
        if e.id == poison.id:
            raise RuntimeError("a bug this event triggers")

    async def scenario() -> list[sa.Row]:
        tables = await setup(db)
        target = consumer(db, tables, handle)
        await target.handle([first, poison, last])
        assert calls == [first.id, poison.id, last.id]  # the event after the poison is handled at once

        async def dead() -> bool:
            return all(r.dead_at is not None for r in await rows(db, tables))

        await retry_until(target, dead)
        for _ in range(3):  # a dead letter is not retried any more: nothing is ever due again
            assert await target.retry_due() == 5.0  # the consumer's poll: no retry is due at all
        found = await rows(db, tables)
        await db.dispose()
        return found

    (row,) = asyncio.run(scenario())
    assert calls.count(poison.id) == 3 and calls.count(first.id) == 1 and calls.count(last.id) == 1
    assert (str(row.event_id), row.consumer, row.topic, row.error, row.attempts) == (
        poison.id,
        "test-consumer",
        "ticket.created",
        "RuntimeError",
        3,
    )
    assert row.next_attempt_at is None and row.tenant_id == uuid.UUID(poison.tenant_id)


def test_a_permanent_error_is_a_dead_letter_at_once(db: Database) -> None:
    poison, good = event(1), event(2)
    calls: list[str] = []

    async def handle(e: Event) -> None:
        calls.append(e.id)
        if e.id == poison.id:
            raise PermanentError("InvalidAddress")

    async def scenario() -> list[sa.Row]:
        tables = await setup(db)
        await consumer(db, tables, handle).handle([poison, good])
        found = await rows(db, tables)
        await db.dispose()
        return found

    (row,) = asyncio.run(scenario())
    assert calls == [poison.id, good.id]
    assert (row.error, row.attempts) == ("InvalidAddress", 1) and row.dead_at is not None


def test_an_outage_of_what_events_go_to_never_makes_dead_letters(db: Database) -> None:
    events = [event(n) for n in range(4)]
    relay_up = False
    calls: list[str] = []

    async def handle(e: Event) -> None:
        calls.append(e.id)
        if not relay_up:
            raise ConnectionRefusedError("relay down")

    async def scenario() -> list[sa.Row]:
        nonlocal relay_up
        tables = await setup(db)
        target = consumer(db, tables, handle)
        await target.handle(events)
        assert len(calls) == 2  # two refusals in a row with nothing through: the rest waits untried
        for _ in range(4 * FAST.max_attempts):  # far more retries than an event's attempts
            await asyncio.sleep(FAST.max_delay.total_seconds())
            await target.retry_due()
        waiting = await rows(db, tables)
        assert len(waiting) == 4 and all(r.dead_at is None and r.attempts == 0 for r in waiting)
        relay_up = True

        async def empty() -> bool:
            return not await rows(db, tables)

        await retry_until(target, empty)
        await db.dispose()
        return waiting

    asyncio.run(scenario())
    assert {e.id for e in events} <= set(calls)


def test_a_connection_failure_only_one_event_causes_counts_against_it_while_others_get_through(
    db: Database,
) -> None:
    poison = event(0)
    calls: list[str] = []

    async def handle(e: Event) -> None:
        calls.append(e.id)
        if e.id == poison.id:
            raise ConnectionResetError("the relay drops the connection on this one message")

    async def scenario() -> sa.Row:
        tables = await setup(db)
        target = consumer(db, tables, handle)
        await target.handle([poison])  # alone: an outage, for all anyone can tell

        async def dead() -> bool:
            await target.handle([event(1)])  # other events keep getting through
            return all(r.dead_at is not None for r in await rows(db, tables))

        await retry_until(target, dead)
        (row,) = await rows(db, tables)
        await db.dispose()
        return row

    row = asyncio.run(scenario())
    assert (row.error, row.attempts) == ("ConnectionResetError", FAST.max_attempts)


def test_a_batch_failing_as_a_whole_is_split_so_its_good_events_are_handled(db: Database) -> None:
    events = [event(n) for n in range(5)]
    poison = events[2]
    handled: list[str] = []

    async def batch_handler(batch: Sequence[Event]) -> int:
        if poison in batch:
            raise ValueError("which event is unknown")
        handled.extend(e.id for e in batch)
        return len(batch)

    async def scenario() -> list[sa.Row]:
        tables = await setup(db)
        store = DeadLetterStore(db, tables.dead_letters, max_attempts=FAST.max_attempts)
        await Consumer("splitter", batch_handler, store=store, policy=FAST, logger=LOG).handle(events)
        found = await rows(db, tables)
        await db.dispose()
        return found

    (row,) = asyncio.run(scenario())
    assert sorted(handled) == sorted(e.id for e in events if e is not poison)
    assert (str(row.event_id), row.error, row.attempts) == (poison.id, "ValueError", 1)


def test_operator_retry_redelivers_to_the_one_consumer_that_failed_and_drop_deletes(db: Database) -> None:
    failing, dropped = event(1), event(2)
    fixed = False
    seen: dict[str, list[str]] = {"emails": [], "audit": []}

    async def email(e: Event) -> None:
        if not fixed:
            raise PermanentError("MailRefused 550")
        seen["emails"].append(e.id)

    async def audit(e: Event) -> None:
        seen["audit"].append(e.id)

    async def scenario() -> tuple[list[sa.Row], int, int]:
        nonlocal fixed
        tables = await setup(db)
        bus = LocalBus()
        emails, audits = consumer(db, tables, email, "emails"), consumer(db, tables, audit, "audit")
        bus.subscribe("emails", {"ticket.created"}, emails.handle)
        bus.subscribe("audit", {"ticket.created"}, audits.handle)
        await bus.publish([failing, dropped])
        store = DeadLetterStore(db, tables.dead_letters)
        listed = await store.list()
        assert sorted(d.event_id for d in listed) == sorted([failing.id, dropped.id])
        assert {(d.consumer, d.status, d.error) for d in listed} == {("emails", "dead", "MailRefused 550")}
        fixed = True
        assert await emails.retry_due() > 0  # dead letters are not retried on their own
        assert await store.retry(event_ids=[failing.id]) == 1
        dropped_count = await store.drop(consumer="emails", event_ids=[dropped.id])
        for target in (emails, audits):
            await target.retry_due()
        left = await rows(db, tables)
        retried_again = await store.retry(event_ids=[failing.id])  # nothing dead any more
        await db.dispose()
        return left, dropped_count, retried_again

    left, dropped_count, retried_again = asyncio.run(scenario())
    assert seen == {"emails": [failing.id], "audit": [failing.id, dropped.id]}
    assert left == [] and dropped_count == 1 and retried_again == 0


def test_the_in_process_dispatcher_is_not_blocked_by_a_consumer_failure(db: Database) -> None:
    handled: list[int] = []

    async def handle(e: Event) -> None:
        if e.payload["n"] == 0:
            raise KeyError("title")
        handled.append(e.payload["n"])

    async def scenario() -> int:
        tables = await setup(db)
        bus = LocalBus()
        bus.subscribe("c", {"t"}, consumer(db, tables, handle, "c").handle)
        async with db.engine.begin() as conn:
            for n in range(3):
                await Outbox(tables.outbox).record(conn, tenant_id=uuid.uuid4(), topic="t", payload={"n": n})
        dispatcher = Dispatcher(db=db, outbox=tables.outbox, bus=bus, logger=LOG)
        first = await dispatcher.dispatch_once(batch=1)  # the poison alone
        rest = await dispatcher.dispatch_once(batch=10)
        async with db.read() as conn:
            pending = await conn.scalar(
                sa.select(sa.func.count()).where(tables.outbox.c.dispatched_at.is_(None))
            )
        await db.dispose()
        assert (first, rest) == (1, 2)
        return int(pending or 0)

    assert asyncio.run(scenario()) == 0
    assert handled == [1, 2]


def test_poisoned_and_unreadable_stream_entries_are_acknowledged_and_the_group_goes_on(
    tmp_path: Path, redis_url: str
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'events.sqlite3'}", schema="public")
    stream = f"hydra:test:{uuid.uuid4().hex[:8]}:tickets"
    poison, good = event(0), event(1)
    handled: list[str] = []

    async def handle(e: Event) -> None:
        if e.id == poison.id:
            raise PermanentError("InvalidAddress")
        handled.append(e.id)

    async def scenario() -> list[sa.Row]:
        tables = await setup(db)
        bus = RedisStreamBus(redis_url, stream=stream, consumer="test@host:1", logger=LOG)
        bus.subscribe("c", {"ticket.created"}, consumer(db, tables, handle, "c").handle)
        runner = asyncio.create_task(bus.run())
        writer = redis.Redis.from_url(redis_url)
        writer.xadd(stream, {"id": "not written by a dispatcher"})  # unreadable: logged and skipped
        writer.close()
        await bus.publish([poison])
        await bus.publish([good])
        for _ in range(100):
            if handled:
                break
            await asyncio.sleep(0.05)
        runner.cancel()
        found = await rows(db, tables)
        await bus.close()
        await db.dispose()
        return found

    (row,) = asyncio.run(scenario())
    assert handled == [good.id] and str(row.event_id) == poison.id and row.dead_at is not None
    client = redis.Redis.from_url(redis_url)
    assert client.xpending(stream, "c")["pending"] == 0
    client.close()
