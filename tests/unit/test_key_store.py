"""The gatekeeper's key cache on a real (SQLite) key table: concurrent misses share one lookup."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event

from edge.gatekeeper.key_admin import KeyAdmin
from edge.gatekeeper.key_store import KeyStore
from edge.gatekeeper.server import PROCESS
from services.common.db import Database
from services.common.migrations import upgrade


class NoInstances:
    async def exists(self, tenant_id: Any, instance_id: Any) -> bool:
        return False


def test_concurrent_misses_share_one_lookup_and_expiry_refreshes_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gatekeeper.sqlite3'}"
    upgrade(migrations_dir=PROCESS.migrations, url=url, schema=PROCESS.schema)

    async def main() -> None:
        db = Database(url, schema=PROCESS.schema)
        lookups: list[str] = []
        event.listen(
            db.engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cur, statement, *_: (
                lookups.append(statement) if "WHERE api_keys.key_hash" in statement else None
            ),
        )
        admin = KeyAdmin(db=db, instances=NoInstances())
        tenant = await admin.create_tenant("acme")
        _, secret = await admin.mint(
            tenant_id=str(tenant.id), kind="hmcp", scopes=["crm:read"], rate_limit=60, instance_id="", name=""
        )
        store = KeyStore(db=db, ttl=0.2)
        try:
            found = await asyncio.gather(*(store.find(secret) for _ in range(20)))
            assert {r.tenant_id for r in found if r is not None} == {tenant.id} and None not in found
            assert len(lookups) == 1
            await asyncio.gather(*(store.find(secret) for _ in range(20)))
            assert len(lookups) == 1  # cached
            await asyncio.sleep(0.25)
            await asyncio.gather(*(store.find(secret) for _ in range(20)))
            assert len(lookups) == 2  # expired: refreshed once for all twenty
            assert await store.find("hmcp_unknown") is None
        finally:
            await db.dispose()

    asyncio.run(main())


def test_a_flood_of_unknown_secrets_never_evicts_the_keys_in_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'gatekeeper.sqlite3'}"
    upgrade(migrations_dir=PROCESS.migrations, url=url, schema=PROCESS.schema)

    async def main() -> None:
        db = Database(url, schema=PROCESS.schema)
        lookups: list[str] = []
        event.listen(
            db.engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cur, statement, *_: (
                lookups.append(statement) if "WHERE api_keys.key_hash" in statement else None
            ),
        )
        admin = KeyAdmin(db=db, instances=NoInstances())
        tenant = await admin.create_tenant("acme")
        _, secret = await admin.mint(
            tenant_id=str(tenant.id), kind="hmcp", scopes=["crm:read"], rate_limit=60, instance_id="", name=""
        )
        store = KeyStore(db=db, ttl=30, max_entries=50, max_unknown=20)
        try:
            assert await store.find(secret) is not None
            for n in range(200):
                assert await store.find(f"hmcp_random{n}") is None
            before = len(lookups)
            assert await store.find(secret) is not None
            assert len(lookups) == before  # still cached
            assert await store.find("hmcp_random199") is None  # the latest unknown ones are cached too
            assert len(lookups) == before
            assert await store.find("hmcp_random0") is None  # the oldest were let go
            assert len(lookups) == before + 1
            assert await store.find("hmcp_never_seen", load=False) is None
            assert len(lookups) == before + 1  # without load, a miss is not looked up
        finally:
            await db.dispose()

    asyncio.run(main())
