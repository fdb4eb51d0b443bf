"""Batching: group commit (a refused row fails alone, nothing is lost) and shared lookup calls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table

from services.common.batching import GroupCommitWriter, LookupCoalescer, RowRejected
from services.common.db import Database, DirectConnection

metadata = MetaData()
rows = Table("rows", metadata, Column("n", Integer, primary_key=True))


@contextlib.asynccontextmanager
async def writer_on(path: Path, batches: list[int], **options: int) -> AsyncIterator[GroupCommitWriter]:
    """A writer on a fresh SQLite table, recording the size of each batch it commits."""
    db = Database(f"sqlite:///{path}", schema="test")
    async with db.transaction() as conn:
        await conn.run_sync(metadata.create_all)

    async def insert_many(conn: DirectConnection, batch: Sequence[Mapping[str, Any]]) -> None:
        batches.append(len(batch))
        await conn.insert_many(rows, batch)

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


def test_concurrent_lookups_of_a_group_share_calls_and_a_failed_call_fails_only_its_lookups() -> None:
    calls: list[tuple[str, list[int]]] = []

    async def fetch(group: str, keys: Sequence[int]) -> dict[int, str]:
        calls.append((group, sorted(keys)))
        await asyncio.sleep(0.01)
        if group == "down":
            raise ConnectionError("peer down")
        return {k: f"{group}{k}" for k in keys if k % 2 == 0}

    async def run() -> list[Any]:
        lookups = LookupCoalescer(fetch, max_batch=3)
        first = await lookups.get("a", 0)  # alone: its own call, answered at once
        outcomes = await asyncio.gather(
            *(lookups.get(group, k) for group in ("a", "b", "down") for k in (1, 2, 2, 3, 4)),
            return_exceptions=True,
        )
        return [first, *outcomes]

    outcomes = asyncio.run(run())
    assert outcomes[0] == "a0"
    # Found keys answer their value, missing ones None; a duplicate key is asked once.
    assert outcomes[1:6] == [None, "a2", "a2", None, "a4"]
    assert outcomes[6:11] == [None, "b2", "b2", None, "b4"]
    assert all(isinstance(o, ConnectionError) for o in outcomes[11:])
    # One call per group at a time, at most max_batch keys each: the rest waits for the next call.
    assert calls == [
        ("a", [0]),
        ("a", [1, 2, 3]),
        ("b", [1, 2, 3]),
        ("down", [1, 2, 3]),
        ("a", [4]),
        ("b", [4]),
        ("down", [4]),
    ]


def test_a_cancelled_lookup_does_not_disturb_the_others() -> None:
    async def fetch(group: str, keys: Sequence[int]) -> dict[int, int]:
        await asyncio.sleep(0.01)
        return {k: k for k in keys}

    async def run() -> tuple[int | None, int | None]:
        lookups = LookupCoalescer(fetch)
        gone = asyncio.create_task(lookups.get("a", 1))
        kept = asyncio.create_task(lookups.get("a", 1))
        await asyncio.sleep(0)
        gone.cancel()
        return await kept, await lookups.get("a", 2)

    assert asyncio.run(run()) == (1, 2)


def test_with_a_min_interval_lookups_arriving_meanwhile_join_the_next_call() -> None:
    calls: list[list[int]] = []

    async def run() -> list[int | None]:
        gates: asyncio.Queue[asyncio.Event] = asyncio.Queue()  # one per call, opened by the test

        async def fetch(group: str, keys: Sequence[int]) -> dict[int, int]:
            calls.append(sorted(keys))
            gates.put_nowait(gate := asyncio.Event())
            await gate.wait()
            return {k: k for k in keys}

        async def settle() -> None:
            for _ in range(5):
                await asyncio.sleep(0)

        lookups = LookupCoalescer(fetch, min_interval=0.3)
        first = asyncio.create_task(lookups.get("a", 1))
        await settle()
        assert calls == [[1]]  # nothing under way: it goes at once
        waiting = [asyncio.create_task(lookups.get("a", k)) for k in (2, 3)]
        await settle()
        (await gates.get()).set()
        await settle()
        assert calls == [[1]]  # the next call waits out the interval...
        waiting.append(asyncio.create_task(lookups.get("a", 4)))  # ...and takes this one along
        (await gates.get()).set()
        answers = [await first, *[await task for task in waiting]]
        # Once the group is quiet, a lone lookup is not held back by the last call.
        alone = asyncio.create_task(lookups.get("a", 5))
        await settle()
        assert calls[-1] == [5]
        (await gates.get()).set()
        return [*answers, await alone]

    assert asyncio.run(run()) == [1, 2, 3, 4, 5]
    assert calls == [[1], [2, 3, 4], [5]]
