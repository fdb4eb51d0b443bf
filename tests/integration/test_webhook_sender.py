"""The webhook sender against real local receivers, on both backends: a tenant's backlog at an endpoint
that holds every connection never keeps another tenant's delivery waiting, and a delivery out of
attempts ends failed and disables an endpoint nothing reached."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.common.db import Database
from services.common.events.hub import Announcement
from services.common.fields import utcnow
from services.common.outbound import HostPolicy
from services.common.paging import Cursors
from services.instances import models
from services.instances.webhook_sender import SenderSettings, WebhookSender
from services.instances.webhooks import EventHub, new_secret
from tests.support.webhook_receiver import WebhookReceiver

HOST = "127.0.0.4"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'sender.sqlite3'}", schema="public")
    return Database(request.getfixturevalue("postgres_url"), schema="public")


def run(db: Database, scenario: Coroutine[Any, Any, None]) -> None:
    async def then_close() -> None:
        try:
            async with db.engine.begin() as conn:
                await conn.run_sync(models.Base.metadata.drop_all)
                await conn.run_sync(models.Base.metadata.create_all)
            await scenario
        finally:
            await db.dispose()

    asyncio.run(then_close())


async def endpoint(db: Database, tenant: uuid.UUID, url: str) -> str:
    """Registers an enabled endpoint for every type; returns its secret."""
    secret, now = new_secret(), utcnow()
    async with db.transaction() as conn:
        await conn.execute(
            sa.insert(models.webhook_endpoints).values(
                tenant_id=tenant,
                id=uuid.uuid4(),
                url=url,
                event_types=["*"],
                enabled=True,
                signing_secret=secret,
                created_at=now,
                updated_at=now,
            )
        )
    return secret


def events(count: int) -> list[Announcement]:
    return [Announcement(uuid.uuid4(), "lead.created", utcnow(), {"n": n}) for n in range(count)]


def sender(db: Database, **settings: Any) -> WebhookSender:
    return WebhookSender(
        db,
        hosts=HostPolicy.from_entries([HOST]),
        settings=SenderSettings(**{"concurrency": 8, "per_endpoint": 2, "per_tenant": 4, **settings}),
        logger=logging.getLogger("test"),
    )


async def until(predicate: Any, send: WebhookSender, seconds: float = 10.0) -> None:
    """Runs claim rounds until `predicate()` holds."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await send.send_due()
        await asyncio.sleep(0.02)


def test_a_backlog_at_a_stuck_endpoint_never_keeps_another_tenants_delivery_waiting(db: Database) -> None:
    async def scenario() -> None:
        hub = EventHub(db=db, cursors=Cursors(b"k" * 32))
        stuck, quick = WebhookReceiver(HOST), WebhookReceiver(HOST)
        stuck.hold = threading.Event()
        with stuck, quick:
            busy, other = uuid.uuid4(), uuid.uuid4()
            await endpoint(db, busy, stuck.url)
            await endpoint(db, busy, stuck.url)  # a second endpoint of the same tenant, also stuck
            quick.secret = await endpoint(db, other, quick.url)
            await hub.record(busy, events(100))  # due before the other tenant's: first in every batch
            await hub.record(other, events(1))
            send = sender(db)
            await until(lambda: len(quick.verified_events()) == 1, send)
            assert stuck.in_flight == 4  # two per endpoint, four for the tenant: no more
            stuck.hold.set()
            await send.drain()
            await send.close()

    run(db, scenario())


def test_a_delivery_out_of_attempts_fails_and_disables_an_endpoint_nothing_reached(db: Database) -> None:
    async def scenario() -> None:
        hub = EventHub(db=db, cursors=Cursors(b"k" * 32))
        with WebhookReceiver(HOST) as receiver:
            tenant = uuid.uuid4()
            receiver.secret = await endpoint(db, tenant, receiver.url)
            receiver.status = 500
            await hub.record(tenant, events(1))
            send = sender(db, retries=(dt.timedelta(0), dt.timedelta(0)))

            async def settled() -> Any:
                async with db.read() as conn:
                    return (await conn.execute(sa.select(models.webhook_deliveries))).one()

            done: list[Any] = []

            async def poll() -> None:
                while (row := await settled()).status == "pending":
                    await send.send_due()
                    await send.drain()
                done.append(row)

            await asyncio.wait_for(poll(), 10)
            assert (done[0].status, done[0].attempts, done[0].last_error) == ("failed", 3, "HTTP 500")
            assert len(receiver.deliveries) == 3 and all(d.verified for d in receiver.deliveries)
            async with db.read() as conn:
                webhook = (await conn.execute(sa.select(models.webhook_endpoints))).one()
            assert not webhook.enabled and "HTTP 500" in webhook.disabled_reason
            await send.close()

    run(db, scenario())
