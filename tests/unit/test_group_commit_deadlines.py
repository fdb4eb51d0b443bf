"""A group commit never applies a write after its caller's deadline, nor one its caller gave up."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from services.common import deadlines
from services.common.errors import DeadlineExceeded
from tests.unit.test_batching import stored, writer_on


def test_writes_whose_deadline_passed_before_their_batch_are_dropped_and_told_so(tmp_path: Path) -> None:
    batches: list[int] = []

    async def run() -> list[object]:
        async with writer_on(tmp_path / "db", batches) as writer:
            loop = asyncio.get_running_loop()

            async def write(n: int, deadline: float | None) -> None:
                token = deadlines.set_current(deadline)
                try:
                    await writer.write({"n": n})
                finally:
                    deadlines.reset_current(token)

            expired = loop.time() - 0.001
            pending = [
                asyncio.create_task(write(0, None)),
                asyncio.create_task(write(1, expired)),
                asyncio.create_task(write(2, loop.time() + 60)),
            ]
            given_up = asyncio.create_task(write(3, None))
            await asyncio.sleep(0)  # all four queued, no batch under way
            given_up.cancel()
            await writer.flush()
            return await asyncio.gather(*pending, return_exceptions=True)

    outcomes = asyncio.run(run())
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], DeadlineExceeded) and "nothing was changed" in outcomes[1].message
    assert asyncio.run(stored(tmp_path / "db")) == [0, 2]
    assert batches == [2]


def test_deadline_helpers() -> None:
    async def run() -> None:
        now = asyncio.get_running_loop().time()
        assert deadlines.current() is None and not deadlines.passed(None)
        assert deadlines.passed(now - 1) and not deadlines.passed(now + 60)

    asyncio.run(run())
    with pytest.raises(RuntimeError):
        deadlines.passed(0.0)  # only meaningful on a running loop
