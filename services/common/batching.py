"""Batching of concurrent small requests: group commit for writes, shared calls for lookups.

Both gather while the previous batch is under way, with no timer: a lone request waits for nothing
but itself, and under load the batches grow on their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from opentelemetry import trace
from sqlalchemy import Table
from sqlalchemy.exc import IntegrityError, StatementError

from services.common import deadlines, tracing
from services.common.db import Database, DirectConnection, is_connection_loss
from services.common.errors import DeadlineExceeded, FieldError, ValidationError

Item = TypeVar("Item")
Group = TypeVar("Group")
Key = TypeVar("Key")
Value = TypeVar("Value")
InsertMany = Callable[[DirectConnection, Sequence[Item]], Awaitable[None]]
FetchMany = Callable[[Group, Sequence[Key]], Awaitable[Mapping[Key, Value]]]


class RowRejected(Exception):
    """A row the database refused on its own (e.g. its parent row was deleted meanwhile)."""


# What the caller of a row the database refused as malformed is told (validation should have caught it).
UNSTORABLE = "The request holds a value that cannot be stored."


def _is_outage(error: Exception) -> bool:
    """Whether `error` is the database being unreachable, rather than something about the rows."""
    return is_connection_loss(error) or isinstance(error, OSError | TimeoutError)


class GroupCommitWriter(Generic[Item]):
    """Writes items (rows, or sets of rows) in batches: while one batch commits, the next one gathers.

    There is no timer, so a lone write waits for nothing but its own commit.

    An acknowledged row is a committed row, so a crash or shutdown never loses one that was acknowledged.
    A write whose caller gave up or whose deadline passed before its batch began is dropped, never
    committed after its caller was told it timed out.
    """

    def __init__(
        self,
        *,
        db: Database,
        insert_many: InsertMany[Item],
        logger: logging.Logger,
        max_batch: int = 1000,
    ) -> None:
        self._db = db
        self._insert_many = insert_many
        self._log = logger
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[None]]] = []
        self._deadlines: dict[asyncio.Future[None], float] = {}
        self._callers: dict[asyncio.Future[None], trace.SpanContext | None] = {}  # their spans, if tracing
        self._wake = asyncio.Event()

    async def write(self, item: Item) -> None:
        """Returns once `item` is committed; raises RowRejected if the database refused it."""
        done = asyncio.get_running_loop().create_future()
        if (deadline := deadlines.current()) is not None:
            self._deadlines[done] = deadline
        if (caller := tracing.caller_span()) is not None:
            self._callers[done] = caller
        self._pending.append((item, done))
        self._wake.set()
        try:
            await done
        finally:
            self._deadlines.pop(done, None)
            self._callers.pop(done, None)

    async def run(self) -> None:
        """The background loop: commits whatever is pending, batch after batch."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Commits everything pending now (used by the loop, and on shutdown)."""
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: len(batch)]
            batch = [(item, done) for item, done in batch if self._still_wanted(done)]
            if batch:
                await self._commit(batch)

    def _still_wanted(self, done: asyncio.Future[None]) -> bool:
        """False for a write whose caller gave up (cancelled) or whose deadline passed: it is failed
        with DeadlineExceeded, and provably never applied."""
        if done.done():
            return False
        if deadlines.passed(self._deadlines.get(done)):
            done.set_exception(DeadlineExceeded(deadlines.NOT_APPLIED))
            return False
        return True

    async def _commit(self, batch: list[tuple[Item, asyncio.Future[None]]]) -> None:
        with tracing.batch_span("group commit", [self._callers.get(done) for _, done in batch]):
            await self._commit_batch(batch)

    async def _commit_batch(self, batch: list[tuple[Item, asyncio.Future[None]]]) -> None:
        try:
            async with self._db.direct_transaction() as conn:
                await self._insert_many(conn, [item for item, _ in batch])
        except Exception as error:
            if len(batch) > 1 and not _is_outage(error):
                await self._commit_one_by_one(batch)  # one refused row must not fail its neighbours
                return
            if isinstance(error, StatementError) and not _is_outage(error):
                self._settle_refused(batch[0][1], error)
                return
            # The database is down: every caller of this batch learns it.
            self._log.warning("batch write failed: %s", error.__class__.__name__)
            for _, done in batch:
                if not done.done():
                    done.set_exception(error)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    async def _commit_one_by_one(self, batch: list[tuple[Item, asyncio.Future[None]]]) -> None:
        """One refused item must not fail its neighbours: retry the batch item by item."""
        for item, done in batch:
            try:
                async with self._db.direct_transaction() as conn:
                    await self._insert_many(conn, [item])
            except StatementError as error:
                if _is_outage(error):
                    if not done.done():
                        done.set_exception(error)
                else:
                    self._settle_refused(done, error)
                continue
            except Exception as error:
                if not done.done():
                    done.set_exception(error)
                continue
            if not done.done():
                done.set_result(None)

    def _settle_refused(self, done: asyncio.Future[None], error: StatementError) -> None:
        """Tells the caller of one row the database refused why: a conflict, or a malformed value."""
        if done.done():
            return
        if isinstance(error, IntegrityError):
            done.set_exception(RowRejected())
            return
        self._log.warning("row refused by the database: %s", error.__class__.__name__)
        done.set_exception(ValidationError(FieldError(("body",), UNSTORABLE, "value_error"), UNSTORABLE))


class RowSet:
    """The rows one write inserts, table by table in the order first named (parents before children)."""

    def __init__(self) -> None:
        self.rows: dict[Table, list[Mapping[str, Any]]] = {}

    def add(self, table: Table, row: Mapping[str, Any]) -> None:
        self.rows.setdefault(table, []).append(row)


async def insert_row_sets(conn: DirectConnection, batch: Sequence[RowSet]) -> None:
    """Inserts every set of a batch with one multi-row statement per table and row shape (set of columns)."""
    merged: dict[tuple[Table, frozenset[str]], list[Mapping[str, Any]]] = {}
    for row_set in batch:
        for table, rows in row_set.rows.items():
            for row in rows:
                merged.setdefault((table, frozenset(row)), []).append(row)
    for (table, _), rows in merged.items():
        await conn.insert_many(table, rows)


class LookupCoalescer(Generic[Group, Key, Value]):
    """Concurrent lookups of one group (e.g. a tenant) share calls: one call out per group at a time.

    `fetch(group, keys)` answers the keys it found; a key it leaves out is answered None. A failed
    call fails every lookup it carried, and only those.

    With `min_interval`, back-to-back calls of a group start at least that many seconds apart, so
    under load each call carries more lookups. A lookup that finds no call under way goes at once.
    """

    def __init__(
        self, fetch: FetchMany[Group, Key, Value], *, max_batch: int = 100, min_interval: float = 0.0
    ) -> None:
        self._fetch = fetch
        self._max_batch = max_batch
        self._min_interval = min_interval
        self._waiting: dict[Group, dict[Key, list[asyncio.Future[Value | None]]]] = {}
        self._drains: dict[Group, asyncio.Task[None]] = {}

    async def get(self, group: Group, key: Key) -> Value | None:
        """The value found for `key` in `group`, or None."""
        answer: asyncio.Future[Value | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(group, {}).setdefault(key, []).append(answer)
        if group not in self._drains:
            self._drains[group] = asyncio.create_task(self._drain(group))
        return await answer

    async def _drain(self, group: Group) -> None:
        answers: dict[Key, list[asyncio.Future[Value | None]]] = {}
        loop = asyncio.get_running_loop()
        try:
            started: float | None = None
            while self._waiting.get(group):
                if started is not None and (wait := started + self._min_interval - loop.time()) > 0:
                    await asyncio.sleep(wait)  # lookups arriving meanwhile join this call
                started = loop.time()
                waiting = self._waiting[group]
                keys = list(waiting)[: self._max_batch]
                answers = {key: waiting.pop(key) for key in keys}
                if not waiting:
                    del self._waiting[group]
                try:
                    found = await self._fetch(group, keys)
                except Exception as error:
                    for futures in answers.values():
                        _settle(futures, error=error)
                else:
                    for key, futures in answers.items():
                        _settle(futures, value=found.get(key))
        finally:
            del self._drains[group]
            # Only left pending when this drain was cancelled (shutdown): release the callers.
            for futures in [*answers.values(), *self._waiting.pop(group, {}).values()]:
                for future in futures:
                    future.cancel()


def _settle(futures: list[asyncio.Future[Any]], *, value: Any = None, error: Exception | None = None) -> None:
    for future in futures:
        if future.done():  # its caller gave up (cancelled)
            continue
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
