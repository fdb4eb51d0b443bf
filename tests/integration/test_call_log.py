"""The MCP call log on both databases: calls recorded at once share commits and each is there once
answered, pages walk them newest first per tenant and surface, and the retention purges old ones."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from pathlib import Path

import pytest
from sqlalchemy import update

from edge.gatekeeper.call_log import CallLog
from edge.gatekeeper.models import tool_calls
from edge.gatekeeper.server import PROCESS
from services.common.db import Database
from services.common.migrations import upgrade


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = (
        f"sqlite:///{tmp_path / 'gatekeeper.sqlite3'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    upgrade(migrations_dir=PROCESS.migrations, url=url, schema=PROCESS.schema)
    return url


def test_calls_are_committed_paged_and_purged(database_url: str) -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()

    async def main() -> None:
        db = Database(database_url, schema=PROCESS.schema)
        log = CallLog(db, keep=dt.timedelta(days=7), cursor_key=b"k" * 32, logger=logging.getLogger("test"))
        await log.start()
        try:
            calls = [
                log.record(
                    tenant_id=str(tenant if n % 4 else other),
                    key_id="key-1",
                    surface="support",
                    tool=f"tool_{n}",
                    scope="crm:read",
                    latency_ms=1.234,
                    status="ok",
                )
                for n in range(60)
            ]
            await asyncio.gather(*calls)
            seen: list[str] = []
            cursor = None
            while True:
                page = await log.page(tenant, "support", limit=20, cursor=cursor)
                seen += [row.tool for row in page.rows]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
            assert sorted(seen) == sorted(f"tool_{n}" for n in range(60) if n % 4)
            assert (await log.page(tenant, "core", limit=None, cursor=None)).rows == []
            async with db.transaction() as conn:
                await conn.execute(
                    update(tool_calls)
                    .where(tool_calls.c.tool.in_(["tool_1", "tool_2"]))
                    .values(at=dt.datetime.now(dt.UTC) - dt.timedelta(days=8))
                )
            assert await log.purge() == 2
            left = await log.page(tenant, "support", limit=100, cursor=None)
            assert len(left.rows) == 43 and {"tool_1", "tool_2"}.isdisjoint(r.tool for r in left.rows)
        finally:
            await log.close()
            await db.dispose()

    asyncio.run(main())
