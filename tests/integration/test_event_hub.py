"""The event hub on both backends: each event recorded once however often it is sent, numbered in its
tenant's order of commit (a client polling the feed while events are recorded sees each one once),
queued for the endpoints subscribed to it, and purged after the feed's retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.common.db import Database
from services.common.events.hub import Announcement
from services.common.events.outbox import Retention
from services.common.fields import utcnow
from services.common.identity import Identity
from services.common.paging import Cursors
from services.instances import models
from services.instances.webhooks import EventHub


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'hub.sqlite3'}", schema="public")
    return Database(request.getfixturevalue("postgres_url"), schema="public")


async def hub_on(db: Database, **kw: Any) -> EventHub:
    async with db.engine.begin() as conn:
        await conn.run_sync(models.Base.metadata.drop_all)
        await conn.run_sync(models.Base.metadata.create_all)
    return EventHub(db=db, cursors=Cursors(b"k" * 32), **kw)


def run(db: Database, scenario: Coroutine[Any, Any, None]) -> None:
    async def then_close() -> None:
        try:
            await scenario
        finally:
            await db.dispose()

    asyncio.run(then_close())


def announcement(n: int, kind: str = "lead.created") -> Announcement:
    return Announcement(uuid.uuid4(), kind, utcnow(), {"id": str(uuid.uuid4()), "n": n})


def caller(tenant: uuid.UUID) -> Identity:
    return Identity(tenant_id=tenant, key_id="k", scopes=frozenset({"events:read"}))


async def walk(hub: EventHub, tenant: uuid.UUID, cursor: str | None = None) -> tuple[list[Any], str]:
    rows: list[Any] = []
    while True:
        page = await hub.feed(caller(tenant), limit=7, cursor=cursor, type=None)
        rows += page.rows
        cursor = hub.cursor(page.after)
        if not page.more:
            return rows, cursor


def test_an_event_sent_twice_is_recorded_once_and_numbered_per_tenant(db: Database) -> None:
    async def scenario() -> None:
        hub = await hub_on(db)
        mine, theirs = uuid.uuid4(), uuid.uuid4()
        first = [announcement(n) for n in range(3)]
        assert await hub.record(mine, first) == 3
        assert await hub.record(mine, [*first[1:], announcement(3)]) == 1  # two seen, one new
        assert await hub.record(theirs, [announcement(0)]) == 1
        rows, _ = await walk(hub, mine)
        assert [json.loads(r.data)["n"] for r in rows] == [0, 1, 2, 3]
        assert len({r.id for r in rows}) == 4
        assert [r.seq for r in rows] == sorted(r.seq for r in rows)
        assert len((await walk(hub, theirs))[0]) == 1

    run(db, scenario())


def test_a_poller_sees_every_event_once_while_many_senders_record_them(db: Database) -> None:
    async def scenario() -> None:
        hub = await hub_on(db)
        tenant = uuid.uuid4()
        batches = [[announcement(b * 10 + n) for n in range(10)] for b in range(30)]
        sent = {e.id for batch in batches for e in batch}
        seen: list[uuid.UUID] = []
        done = asyncio.Event()

        async def send(batch: list[Announcement]) -> None:
            await asyncio.sleep(random.random() / 20)
            await hub.record(tenant, batch)
            if random.random() < 0.5:  # a redelivery of part of it, as the outbox may send
                await hub.record(tenant, batch[:5])

        async def poll() -> None:
            cursor = None
            while True:
                finished = done.is_set()
                rows, cursor = await walk(hub, tenant, cursor)
                seen.extend(r.id for r in rows)
                if finished:
                    return
                await asyncio.sleep(0.005)

        poller = asyncio.create_task(poll())
        await asyncio.gather(*(send(batch) for batch in batches))
        done.set()
        await poller
        assert len(seen) == len(set(seen)) == len(sent)  # nothing twice, nothing missed
        assert set(seen) == sent

    run(db, scenario())


def test_deliveries_are_queued_for_enabled_endpoints_subscribed_to_the_type(db: Database) -> None:
    async def scenario() -> None:
        woken: list[bool] = []
        hub = await hub_on(db, queued=lambda: woken.append(True))
        tenant = uuid.uuid4()
        now = utcnow()
        endpoints = {
            "all": (["*"], True),
            "leads": (["lead.*"], True),
            "tickets": (["ticket.created"], True),
            "off": (["*"], False),
        }
        ids = {name: uuid.uuid4() for name in endpoints}
        async with db.transaction() as conn:
            for name, (types, enabled) in endpoints.items():
                await conn.execute(
                    sa.insert(models.webhook_endpoints).values(
                        tenant_id=tenant,
                        id=ids[name],
                        url="https://example.com/",
                        description=None,
                        event_types=types,
                        enabled=enabled,
                        signing_secret="whsec_AAAA",
                        created_at=now,
                        updated_at=now,
                    )
                )
        await hub.record(tenant, [announcement(0, "lead.updated"), announcement(1, "account.created")])
        async with db.read() as conn:
            rows = (await conn.execute(sa.select(models.webhook_deliveries))).all()
        queued = sorted((r.event_type, next(n for n, i in ids.items() if i == r.endpoint_id)) for r in rows)
        assert queued == [("account.created", "all"), ("lead.updated", "all"), ("lead.updated", "leads")]
        assert all(r.status == "pending" and r.attempts == 0 for r in rows) and woken

    run(db, scenario())


def test_events_and_deliveries_past_retention_are_purged(db: Database) -> None:
    async def scenario() -> None:
        hub = await hub_on(db)
        retention = Retention(
            db=db,
            stamps=(models.events.c.recorded_at, models.webhook_deliveries.c.created_at),
            keep=dt.timedelta(days=30),
            logger=logging.getLogger("test"),
            batch=2,
        )
        tenant = uuid.uuid4()
        await hub.record(tenant, [announcement(n) for n in range(3)])
        assert await retention.purge_once() == 0
        assert await retention.purge_once(now=utcnow() + dt.timedelta(days=31)) == 3
        assert (await walk(hub, tenant))[0] == []

    run(db, scenario())
