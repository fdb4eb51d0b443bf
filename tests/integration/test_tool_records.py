"""The gatekeeper's MCP records on both databases: confirmation tokens redeemed once (also when two
requests race), only by their key, never after they expire; the call log's calls committed in shared
batches, paged newest first per tenant and surface, and purged after the retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select, update

from edge.gatekeeper.call_log import CallLog
from edge.gatekeeper.confirmations import Confirmations, Refused
from edge.gatekeeper.models import tool_calls, tool_confirmations
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


async def _refusal(confirmations: Confirmations, token: str, key_id: str) -> str:
    with pytest.raises(Refused) as refused:
        await confirmations.redeem(token, key_id)
    return str(refused.value)


def test_a_token_is_redeemed_once_by_its_key(database_url: str) -> None:
    async def main() -> None:
        db = Database(database_url, schema=PROCESS.schema)
        confirmations = Confirmations(db)
        try:
            arguments = {"id": "7", "lead": {"name": "Ada", "phone": None}}
            token = await confirmations.issue("key-1", "update_lead", arguments, "2026-12-03T10:00:00Z")
            assert "Unknown confirmation token" in await _refusal(confirmations, token, "key-2")
            pending = await confirmations.redeem(token, "key-1")
            assert (pending.tool, pending.arguments, pending.version) == (
                "update_lead",
                arguments,
                "2026-12-03T10:00:00Z",
            )
            assert "already used" in await _refusal(confirmations, token, "key-1")
            async with db.read() as conn:
                kept = (await conn.execute(select(tool_confirmations.c.arguments))).scalars().all()
            assert kept == [{}]  # what was confirmed is not kept
            assert "Unknown confirmation token" in await _refusal(confirmations, token + "x", "key-1")
            raced = await confirmations.issue("key-1", "delete_lead", {"id": "7"}, None)
            outcomes = await asyncio.gather(
                *(confirmations.redeem(raced, "key-1") for _ in range(8)), return_exceptions=True
            )
            assert sum(not isinstance(o, Exception) for o in outcomes) == 1
            assert all(isinstance(o, Refused) for o in outcomes if isinstance(o, Exception))
        finally:
            await db.dispose()

    asyncio.run(main())


def test_an_expired_token_is_refused(database_url: str) -> None:
    async def main() -> None:
        db = Database(database_url, schema=PROCESS.schema)
        try:
            expired = Confirmations(db, valid_for=dt.timedelta(0))
            token = await expired.issue("key-1", "create_lead", {"lead": {"name": "Ada"}}, None)
            assert "expired" in await _refusal(expired, token, "key-1")
            live = await Confirmations(db).issue("key-1", "create_lead", {"lead": {"name": "Grace"}}, None)
            assert await expired.purge() == 1  # the expired token, with the arguments never confirmed
            assert "expired" not in await _refusal(expired, token, "key-1")
            assert (await Confirmations(db).redeem(live, "key-1")).tool == "create_lead"
        finally:
            await db.dispose()

    asyncio.run(main())


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
