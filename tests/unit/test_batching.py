"""Group commit: concurrent writes share transactions, a refused row fails alone, nothing is lost."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database
from services.public.batching import GroupCommitWriter, RowRejected

metadata = MetaData()
rows = Table("rows", metadata, Column("n", Integer, primary_key=True))


def test_concurrent_writes_are_batched_and_each_is_committed_before_it_returns(tmp_path: Path) -> None:
    async def run() -> tuple[list[int], list[int], list[Any]]:
        db = Database(f"sqlite:///{tmp_path / 'b.sqlite3'}", schema="b")
        async with db.transaction() as conn:
            await conn.run_sync(metadata.create_all)
        batches: list[int] = []

        async def insert_many(conn: AsyncConnection, batch: Sequence[Mapping[str, Any]]) -> None:
            batches.append(len(batch))
            await conn.execute(rows.insert(), [dict(r) for r in batch])

        writer = GroupCommitWriter(db=db, insert_many=insert_many, logger=logging.getLogger("test"))
        loop = asyncio.create_task(writer.run())
        # 3 is written twice: its second write is refused alone, its neighbours still commit.
        outcomes = await asyncio.gather(
            *(writer.write({"n": n}) for n in [*range(200), 3]), return_exceptions=True
        )
        loop.cancel()
        async with db.read() as conn:
            stored = sorted(r.n for r in (await conn.execute(rows.select())).all())
        await db.dispose()
        return batches, stored, outcomes

    batches, stored, outcomes = asyncio.run(run())
    assert stored == list(range(200))
    assert outcomes[:200] == [None] * 200 and isinstance(outcomes[200], RowRejected)
    # One shared transaction for all 201 writes; the refused row then sent it back row by row.
    assert batches == [201] + [1] * 201


def test_a_flush_on_shutdown_commits_what_is_pending(tmp_path: Path) -> None:
    async def run() -> int:
        db = Database(f"sqlite:///{tmp_path / 'c.sqlite3'}", schema="c")
        async with db.transaction() as conn:
            await conn.run_sync(metadata.create_all)

        async def insert_many(conn: AsyncConnection, batch: Sequence[Mapping[str, Any]]) -> None:
            await conn.execute(rows.insert(), [dict(r) for r in batch])

        writer = GroupCommitWriter(db=db, insert_many=insert_many, logger=logging.getLogger("test"))
        pending = [asyncio.create_task(writer.write({"n": n})) for n in range(50)]
        await asyncio.sleep(0)  # queued, and no background loop running
        await writer.flush()
        await asyncio.gather(*pending)
        async with db.read() as conn:
            count = len((await conn.execute(rows.select())).all())
        await db.dispose()
        return count

    assert asyncio.run(run()) == 50


def test_max_batch_bounds_each_transaction(tmp_path: Path) -> None:
    size = 2

    async def run() -> list[int]:
        db = Database(f"sqlite:///{tmp_path / 'd.sqlite3'}", schema="d")
        async with db.transaction() as conn:
            await conn.run_sync(metadata.create_all)
        batches: list[int] = []

        async def insert_many(conn: AsyncConnection, batch: Sequence[Mapping[str, Any]]) -> None:
            batches.append(len(batch))
            await conn.execute(rows.insert(), [dict(r) for r in batch])

        writer = GroupCommitWriter(
            db=db, insert_many=insert_many, logger=logging.getLogger("test"), max_batch=size
        )
        pending = [asyncio.create_task(writer.write({"n": n})) for n in range(5)]
        await asyncio.sleep(0)
        await writer.flush()
        await asyncio.gather(*pending)
        await db.dispose()
        return batches

    assert asyncio.run(run()) == [2, 2, 1]
