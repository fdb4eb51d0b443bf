"""Group commit: concurrent small writes share one transaction; each caller returns once committed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database

InsertMany = Callable[[AsyncConnection, Sequence[Mapping[str, Any]]], Awaitable[None]]


class RowRejected(Exception):
    """A row the database refused on its own (e.g. its parent row was deleted meanwhile)."""


class GroupCommitWriter:
    """Writes rows in batches: while one batch commits, the next one gathers (no timer, no added wait).

    An acknowledged row is a committed row, so a crash or shutdown never loses one that was acknowledged.
    """

    def __init__(
        self, *, db: Database, insert_many: InsertMany, logger: logging.Logger, max_batch: int = 1000
    ) -> None:
        self._db = db
        self._insert_many = insert_many
        self._log = logger
        self._max_batch = max_batch
        self._pending: list[tuple[Mapping[str, Any], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()

    async def write(self, row: Mapping[str, Any]) -> None:
        """Returns once `row` is committed; raises RowRejected if the database refused it."""
        done = asyncio.get_running_loop().create_future()
        self._pending.append((row, done))
        self._wake.set()
        await done

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
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[Mapping[str, Any], asyncio.Future[None]]]) -> None:
        try:
            async with self._db.transaction() as conn:
                await self._insert_many(conn, [row for row, _ in batch])
        except IntegrityError:
            await self._commit_one_by_one(batch)
            return
        except Exception as error:  # the database is down: every caller of this batch learns it
            self._log.warning("batch write failed: %s", error.__class__.__name__)
            for _, done in batch:
                if not done.done():
                    done.set_exception(error)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)

    async def _commit_one_by_one(self, batch: list[tuple[Mapping[str, Any], asyncio.Future[None]]]) -> None:
        """One refused row must not fail its neighbours: retry the batch row by row."""
        for row, done in batch:
            try:
                async with self._db.transaction() as conn:
                    await self._insert_many(conn, [row])
            except IntegrityError:
                outcome: BaseException | None = RowRejected()
            except Exception as error:
                outcome = error
            else:
                outcome = None
            if done.done():
                continue
            if outcome is None:
                done.set_result(None)
            else:
                done.set_exception(outcome)
