"""Failed deliveries: an event a consumer fails on is retried with backoff, then kept as a dead letter.

Each service keeps them in its own `dead_letters` table, one row per event and consumer: while a row
waits for its next attempt it is the event's retry, and once given up (`dead_at` set) it is a dead
letter, kept until an operator retries or drops it. A consumer never waits for a failed event: it
records it and goes on with the next one, and a loop of its own tries the recorded ones again when due.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
    bindparam,
    case,
    delete,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from services.common.db import Database
from services.common.events.bus import Event
from services.common.events.faults import EventFailed, Fault, Unreachable, classify, error_label
from services.common.events.inbox import CountingHandler
from services.common.fields import aware, utcnow


def dead_letter_table(metadata: MetaData) -> Table:
    """dead_letters: the events a consumer failed on, waiting for a retry or, once dead, for an operator."""
    return Table(
        "dead_letters",
        metadata,
        Column("tenant_id", Uuid, primary_key=True),
        Column("event_id", Uuid, primary_key=True),
        Column("consumer", String(100), primary_key=True),
        Column("topic", String(100), nullable=False),
        Column("payload", Text, nullable=False),
        Column("error", String(200), nullable=False),  # the error's class (and reply code), never its text
        Column("attempts", Integer, nullable=False),  # failures counted against the event
        Column("first_failed_at", DateTime(timezone=True), nullable=False),
        Column("last_failed_at", DateTime(timezone=True), nullable=False),
        Column("next_attempt_at", DateTime(timezone=True)),  # null once dead
        Column("dead_at", DateTime(timezone=True)),  # null while it is still retried
        # Each consumer looks for its due retries across tenants: this index cannot lead with tenant_id.
        Index(None, "consumer", "next_attempt_at"),
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how far apart, a failed event is tried again before it becomes a dead letter."""

    max_attempts: int = 8
    first_delay: dt.timedelta = dt.timedelta(seconds=1)
    max_delay: dt.timedelta = dt.timedelta(seconds=60)

    def delay(self, failures: int) -> dt.timedelta:
        """The wait after the `failures`-th failure in a row: doubling from first_delay up to max_delay."""
        return min(self.max_delay, self.first_delay * (1 << min(max(failures - 1, 0), 32)))


@dataclass(frozen=True)
class DeadLetter:
    """One failed delivery as an operator sees it (never its payload: it may hold personal data)."""

    consumer: str
    event_id: str
    tenant_id: str
    topic: str
    error: str
    attempts: int
    first_failed_at: dt.datetime
    last_failed_at: dt.datetime
    next_attempt_at: dt.datetime | None
    dead_at: dt.datetime | None

    @property
    def status(self) -> str:
        return "retrying" if self.dead_at is None else "dead"

    def as_dict(self) -> dict[str, Any]:
        def stamp(value: dt.datetime | None) -> str | None:
            return None if value is None else value.isoformat().replace("+00:00", "Z")

        return {
            "consumer": self.consumer,
            "event_id": self.event_id,
            "tenant_id": self.tenant_id,
            "topic": self.topic,
            "error": self.error,
            "attempts": self.attempts,
            "status": self.status,
            "first_failed_at": stamp(self.first_failed_at),
            "last_failed_at": stamp(self.last_failed_at),
            "next_attempt_at": stamp(self.next_attempt_at),
            "dead_at": stamp(self.dead_at),
        }


class Selection(TypedDict, total=False):
    """The rows an operator acts on: the dead letters, narrowed by whichever of these are given."""

    consumer: str | None
    tenant: str | None
    event_ids: Sequence[str]
    retrying: bool  # the failed events still waiting for a retry as well


@dataclass(frozen=True)
class _Due:
    """A failed event claimed for its next attempt."""

    event: Event
    attempts: int
    last_failed_at: dt.datetime


class DeadLetterStore:
    """The statements on one service's dead_letters table: the consumers' and the operator's."""

    def __init__(self, db: Database, table: Table, *, max_attempts: int = RetryPolicy.max_attempts) -> None:
        self._db = db
        self._table = t = table
        dialect_insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
        insert = dialect_insert(t)
        new = insert.excluded
        # A row already there (the event failed again after a redelivery, or its retry failed) adds
        # the new failure to it; one already dead, or now out of attempts, is (or stays) dead.
        dead = or_(
            t.c.dead_at.is_not(None),
            new.dead_at.is_not(None),
            t.c.attempts + new.attempts >= literal(max_attempts, Integer),
        )
        self._record = insert.on_conflict_do_update(
            index_elements=[t.c.tenant_id, t.c.event_id, t.c.consumer],
            set_={
                "error": new.error,
                "attempts": t.c.attempts + new.attempts,
                "last_failed_at": new.last_failed_at,
                "next_attempt_at": case((dead, None), else_=new.next_attempt_at),
                "dead_at": case((dead, func.coalesce(t.c.dead_at, new.last_failed_at)), else_=None),
            },
        )
        due = (
            select(t.c.tenant_id, t.c.event_id, t.c.consumer)
            .where(t.c.consumer == bindparam("of_consumer"), t.c.next_attempt_at <= bindparam("now"))
            .order_by(t.c.next_attempt_at)
            .limit(bindparam("batch", type_=Integer))
        )
        if db.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)  # replicas of a consumer share the table
        # Claiming pushes the next attempt out by a lease: a replica that dies mid-retry leaves the
        # row to be tried again once the lease ends.
        self._claim = (
            update(t)
            .where(tuple_(t.c.tenant_id, t.c.event_id, t.c.consumer).in_(due))
            .values(next_attempt_at=bindparam("lease_until"))
            .returning(t.c.tenant_id, t.c.event_id, t.c.topic, t.c.payload, t.c.attempts, t.c.last_failed_at)
        )
        self._next_due = select(func.min(t.c.next_attempt_at).label("due")).where(
            t.c.consumer == bindparam("of_consumer")
        )
        self._delivered = delete(t).where(
            t.c.consumer == bindparam("of_consumer"),
            tuple_(t.c.tenant_id, t.c.event_id).in_(bindparam("keys", expanding=True)),
        )

    async def record(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Records failures (see Consumer._record for the rows)."""
        async with self._db.transaction() as conn:
            await conn.execute(self._record, list(rows))

    async def next_due(self, consumer: str) -> dt.datetime | None:
        """When the consumer's earliest retry is due (None: it has none)."""
        # Asked every few seconds by every consumer, so it takes the direct path (a third of the CPU).
        async with self._db.direct() as conn:
            (row,) = await conn.fetch(self._next_due, {"of_consumer": consumer})
        due: dt.datetime | None = row.due
        return aware(due)

    async def claim(self, consumer: str, *, now: dt.datetime, lease: dt.timedelta, batch: int) -> list[_Due]:
        """Up to `batch` of the consumer's retries due at `now`, each held for `lease`."""
        params = {"of_consumer": consumer, "now": now, "lease_until": now + lease, "batch": batch}
        async with self._db.transaction() as conn:
            rows = (await conn.execute(self._claim, params)).all()
        claimed = []
        for row in rows:
            try:
                payload = json.loads(row.payload)
            except ValueError:
                payload = {"unreadable": True}  # the handler fails on it, and it ends as a dead letter
            event = Event(str(row.event_id), str(row.tenant_id), row.topic, payload)
            claimed.append(_Due(event, row.attempts, aware(row.last_failed_at) or now))
        return claimed

    async def delivered(self, consumer: str, events: Sequence[Event]) -> None:
        """Forgets the failures of events the consumer has now handled."""
        if events:
            keys = [(uuid.UUID(e.tenant_id), uuid.UUID(e.id)) for e in events]
            async with self._db.transaction() as conn:
                await conn.execute(self._delivered, {"of_consumer": consumer, "keys": keys})

    def _matching(
        self,
        *,
        consumer: str | None = None,
        tenant: str | None = None,
        event_ids: Sequence[str] = (),
        retrying: bool = False,
    ) -> list[Any]:
        """The conditions of a Selection."""
        t = self._table
        where: list[Any] = [] if retrying else [t.c.dead_at.is_not(None)]
        if consumer:
            where.append(t.c.consumer == consumer)
        if tenant:
            where.append(t.c.tenant_id == uuid.UUID(tenant))
        if event_ids:
            where.append(t.c.event_id.in_([uuid.UUID(e) for e in event_ids]))
        return where

    async def list(self, *, limit: int = 100, **selection: Unpack[Selection]) -> list[DeadLetter]:
        """The dead letters (and with `retrying`, the failed events still retried), newest failure first."""
        t = self._table
        query = select(t).where(*self._matching(**selection)).order_by(t.c.last_failed_at.desc()).limit(limit)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [
            DeadLetter(
                consumer=r.consumer,
                event_id=str(r.event_id),
                tenant_id=str(r.tenant_id),
                topic=r.topic,
                error=r.error,
                attempts=r.attempts,
                first_failed_at=aware(r.first_failed_at) or r.first_failed_at,
                last_failed_at=aware(r.last_failed_at) or r.last_failed_at,
                next_attempt_at=aware(r.next_attempt_at),
                dead_at=aware(r.dead_at),
            )
            for r in rows
        ]

    async def retry(self, **selection: Unpack[Selection]) -> int:
        """Gives the matching rows a fresh set of attempts, due now: the consumer that failed each one
        (and only that one) picks it up within seconds. Returns how many."""
        where = self._matching(**selection)
        statement = (
            update(self._table).where(*where).values(dead_at=None, attempts=0, next_attempt_at=utcnow())
        )
        async with self._db.transaction() as conn:
            return int((await conn.execute(statement)).rowcount)

    async def drop(self, **selection: Unpack[Selection]) -> int:
        """Deletes the matching rows: those events are never delivered to those consumers. How many."""
        where = self._matching(**selection)
        async with self._db.transaction() as conn:
            return int((await conn.execute(delete(self._table).where(*where))).rowcount)


@dataclass(frozen=True)
class _Failure:
    """How one event failed this time."""

    event: Event
    error: str
    permanent: bool
    counted: bool  # against the event's attempts (a downstream outage is not the event's fault)


class Consumer:
    """One named consumer: hands events to its handler and settles each one, never holding up the rest.

    An event that fails is recorded and retried later with backoff, at most `max_attempts` times,
    then kept as a dead letter; a permanent error makes it a dead letter at once. A failing batch is
    split so its other events are still handled.

    When what the events go to is down (a relay that refuses connections, a peer that does not
    answer) every event fails alike and none of it is the events' fault: such a failure counts
    against an event only when the consumer has seen another event handled since, so an outage of
    any length turns nothing into a dead letter, while one event that alone breaks the connection
    still runs out of attempts.
    """

    def __init__(
        self,
        name: str,
        handler: CountingHandler,
        *,
        store: DeadLetterStore,
        policy: RetryPolicy,
        logger: logging.Logger,
        poll_seconds: float = 5.0,
        batch: int = 20,
        lease: dt.timedelta = dt.timedelta(seconds=60),
    ) -> None:
        self.name = name
        self._handler = handler
        self._store = store
        self._policy = policy
        self._log = logger
        self._poll = poll_seconds
        self._batch = batch
        self._lease = lease
        self._handled_at: dt.datetime | None = None  # when the handler last got an event through
        self._outages = 0  # attempts in a row that got nothing through: paces retries during an outage
        self._outage_until: dt.datetime | None = None
        self._recorded = asyncio.Event()

    async def handle(self, events: Sequence[Event]) -> None:
        """Handles a batch from the bus: each event handled or recorded (raises only if recording fails)."""
        failures = await self._attempt(events, {})
        if failures:
            await self._record(failures, {})

    async def run(self) -> None:
        """Retries the consumer's failed events as they come due, until cancelled."""
        while True:
            try:
                wait = await self.retry_due()
            except Exception as error:  # the database is down: look again later
                self._log.warning(
                    "retrying failed events failed",
                    extra={"consumer": self.name, "error": type(error).__name__},
                )
                wait = self._poll
            if wait > 0:
                self._recorded.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._recorded.wait(), wait)

    async def retry_due(self) -> float:
        """Tries one batch of the retries due now; returns how long to wait before looking again."""
        now = utcnow()
        if self._outage_until is not None and now < self._outage_until:
            # What the events go to is down: the due retries wait for the next probe instead of all
            # failing alike (new events still try, and the first one through ends the wait).
            return (self._outage_until - now).total_seconds()
        next_due = await self._store.next_due(self.name)
        if next_due is None or next_due > now:
            until = self._poll if next_due is None else (next_due - now).total_seconds()
            return min(max(until, 0.01), self._poll)
        due = await self._store.claim(self.name, now=now, lease=self._lease, batch=self._batch)
        events = [d.event for d in due]
        failures = await self._attempt(events, {d.event.id: d.last_failed_at for d in due})
        failed = {f.event.id for f in failures}
        await self._store.delivered(self.name, [e for e in events if e.id not in failed])
        if failures:
            await self._record(failures, {d.event.id: d.attempts for d in due})
        return 0 if len(due) == self._batch else 0.01

    def _got_through(self, since: dt.datetime | None) -> bool:
        """Whether the handler got an event through after `since` (the downstream works)."""
        return since is not None and self._handled_at is not None and self._handled_at > since

    async def _attempt(self, events: Sequence[Event], failed_at: Mapping[str, dt.datetime]) -> list[_Failure]:
        """Hands the events to the handler until each is handled or failed; the failures.

        `failed_at` holds when retried events failed last, to tell whether others got through since.
        """
        queue = list(events)
        failures: list[_Failure] = []
        suspects: list[tuple[Event, BaseException]] = []  # downstream failures nobody got past yet
        got_through = False
        one_by_one = False
        while queue:
            batch = queue[:1] if one_by_one else queue
            try:
                if await self._handler(batch):
                    got_through = self._through()
                queue = queue[len(batch) :]
                continue
            except Exception as error:
                named = error if isinstance(error, EventFailed) else None
                if named is not None and named.handled:
                    got_through = self._through()
                position = next((i for i, e in enumerate(batch) if named and e.id == named.event.id), None)
                if position is None and len(batch) > 1:
                    one_by_one = True  # which event failed is unknown: try each alone
                    continue
                position = position or 0
                event, cause = batch[position], named.cause if named else error
                queue = [e for e in queue[position + 1 :] if e.id != event.id]
            fault = classify(cause)
            if fault is not Fault.DOWNSTREAM or got_through or self._got_through(failed_at.get(event.id)):
                failures.append(_Failure(event, error_label(cause), fault is Fault.PERMANENT, counted=True))
                continue
            suspects.append((event, cause))
            if isinstance(cause, Unreachable) or len(suspects) > 1:
                # Nothing gets through: an outage. The rest waits for it to end, untried.
                failures += [_Failure(e, error_label(c), False, counted=False) for e, c in suspects]
                failures += [_Failure(e, error_label(cause), False, counted=False) for e in queue]
                suspects, queue = [], []
                self._outage()
        # A downstream failure, then the events after it got through: it was this event's own.
        failures += [_Failure(e, error_label(c), False, counted=got_through) for e, c in suspects]
        if suspects and not got_through:
            self._outage()
        return failures

    def _through(self) -> bool:
        """Notes that the handler got an event through just now."""
        self._handled_at = utcnow()
        self._outages = 0
        self._outage_until = None
        return True

    def _outage(self) -> None:
        """Notes an attempt that got nothing through: retries pause, longer each time in a row."""
        self._outages += 1
        self._outage_until = utcnow() + self._policy.delay(self._outages)

    async def _record(self, failures: Sequence[_Failure], attempts_before: Mapping[str, int]) -> None:
        """Records the failures: each one retried after its backoff, or dead."""
        now = utcnow()
        rows = []
        for failure in failures:
            event = failure.event
            attempts = attempts_before.get(event.id, 0) + failure.counted
            dead = failure.permanent or attempts >= self._policy.max_attempts
            delay = self._policy.delay(attempts if failure.counted else max(self._outages, 1))
            rows.append(
                {
                    "tenant_id": uuid.UUID(event.tenant_id),
                    "event_id": uuid.UUID(event.id),
                    "consumer": self.name,
                    "topic": event.topic,
                    "payload": json.dumps(event.payload, default=str),
                    "error": failure.error,
                    "attempts": int(failure.counted),
                    "first_failed_at": now,
                    "last_failed_at": now,
                    "next_attempt_at": None if dead else now + delay,
                    "dead_at": now if dead else None,
                }
            )
            if failure.counted:
                (self._log.warning if dead else self._log.info)(
                    "event moved to dead letters" if dead else "event failed; will retry",
                    extra={
                        "consumer": self.name,
                        "event_id": event.id,
                        "tenant_id": event.tenant_id,
                        "topic": event.topic,
                        "error": failure.error,
                        "attempts": attempts,
                    },
                )
        if waiting := sum(not f.counted for f in failures):
            self._log.warning(
                "events wait for what they go to to come back",
                extra={"consumer": self.name, "events": waiting, "error": failures[-1].error},
            )
        await self._store.record(rows)
        self._recorded.set()
