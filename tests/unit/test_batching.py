"""Group commit: concurrent writes share transactions, a refused row fails alone, nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database
from services.public.batching import GroupCommitWriter, RowRejected

metadata = MetaData()
rows = Table("rows", metadata, Column("n", Integer, primary_key=True))


@contextlib.asynccontextmanager
async def writer_on(path: Path, batches: list[int], **options: int) -> AsyncIterator[GroupCommitWriter]:
    """A writer on a fresh SQLite table, recording the size of each batch it commits."""
    db = Database(f"sqlite:///{path}", schema="test")
    async with db.transaction() as conn:
        await conn.run_sync(metadata.create_all)

    async def insert_many(conn: AsyncConnection, batch: Sequence[Mapping[str, Any]]) -> None:
        batches.append(len(batch))
        await conn.execute(rows.insert(), [dict(r) for r in batch])

    writer = GroupCommitWriter(db=db, insert_many=insert_many, logger=logging.getLogger("test"), **options)
    try:
        yield writer
    finally:
        await db.dispose()


async def stored(path: Path) -> list[int]:
    db = Database(f"sqlite:///{path}", schema="test")
    async with db.read() as conn:
        numbers = sorted(r.n for r in (await conn.execute(rows.select())).all())
    await db.dispose()
    return numbers


def test_concurrent_writes_share_a_transaction_and_a_refused_row_fails_alone(tmp_path: Path) -> None:
    batches: list[int] = []

    async def run() -> list[Any]:
        async with writer_on(tmp_path / "db", batches) as writer:
            loop = asyncio.create_task(writer.run())
            # 3 is written twice: its second write is refused alone, its neighbours still commit.
            outcomes = await asyncio.gather(
                *(writer.write({"n": n}) for n in [*range(200), 3]), return_exceptions=True
            )
            loop.cancel()
            return outcomes

    outcomes = asyncio.run(run())
    assert asyncio.run(stored(tmp_path / "db")) == list(range(200))
    assert outcomes[:200] == [None] * 200 and isinstance(outcomes[200], RowRejected)
    # One shared transaction for all 201 writes; the refused row then sent it back row by row.
    assert batches == [201] + [1] * 201


def test_a_flush_on_shutdown_commits_what_is_pending_in_bounded_batches(tmp_path: Path) -> None:
    batches: list[int] = []

    async def run() -> None:
        async with writer_on(tmp_path / "db", batches, max_batch=2) as writer:
            pending = [asyncio.create_task(writer.write({"n": n})) for n in range(5)]
            await asyncio.sleep(0)  # queued, and no background loop running
            await writer.flush()
            await asyncio.gather(*pending)

    asyncio.run(run())
    assert asyncio.run(stored(tmp_path / "db")) == [0, 1, 2, 3, 4]
    assert batches == [2, 2, 1]
