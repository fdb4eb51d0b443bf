"""Idempotency-Keys in a service's database: a claim is the key's until answered, an answer is kept for a
day, a claim whose request never answered is taken over after its lease, and an answer that says
nothing is known releases the key. On both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from services.common.db import Database
from services.common.errors import Conflict, Unavailable
from services.common.idempotency import (
    KEPT_FOR,
    LEASE,
    Answer,
    IdempotencyKeyReused,
    IdempotencyKeys,
    fingerprint,
    idempotency_table,
)

TENANT = "9b7a3b6e-0000-4000-8000-000000000001"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'keys.sqlite3'}", schema="public")
    return Database(request.getfixturevalue("postgres_url"), schema="public")


async def keys_on(db: Database) -> tuple[IdempotencyKeys, sa.Table]:
    metadata = sa.MetaData()
    table = idempotency_table(metadata)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.drop_all)
        await conn.run_sync(metadata.create_all)
    return IdempotencyKeys(db, table), table


def run(db: Database, scenario: Coroutine[Any, Any, None]) -> None:
    """Runs a scenario, then closes the database's connections."""

    async def then_close() -> None:
        try:
            await scenario
        finally:
            await db.dispose()

    asyncio.run(then_close())


async def age(db: Database, table: sa.Table, by: dt.timedelta) -> None:
    """Stands for time passing: every claim made `by` earlier."""
    async with db.transaction() as conn:
        rows = (await conn.execute(sa.select(table.c.key, table.c.claimed_at))).all()
        for row in rows:
            await conn.execute(
                sa.update(table).where(table.c.key == row.key).values(claimed_at=row.claimed_at - by)
            )


def test_a_key_is_claimed_once_answered_replayed_and_refused_for_another_request(db: Database) -> None:
    async def scenario() -> None:
        keys, _ = await keys_on(db)
        request = fingerprint("/svc/Create", b"body")
        assert await keys.claim(TENANT, "k1", request) is None
        loop = asyncio.get_running_loop()
        with pytest.raises(Conflict) as running:  # held, not answered: the second waits, then 409
            await keys.claim(TENANT, "k1", request, wait_until=loop.time() + 0.1)
        assert running.value.code == "idempotency_key_in_use"
        answer = Answer(grpc.StatusCode.OK, b"\x0a\x02hi", headers=(("etag", '"v1"'),))
        await keys.keep(TENANT, "k1", answer)
        assert await keys.claim(TENANT, "k1", request) == answer
        with pytest.raises(IdempotencyKeyReused):
            await keys.claim(TENANT, "k1", fingerprint("/svc/Create", b"other"))
        assert await keys.claim("another-tenant", "k1", request) is None  # each caller's own

    run(db, scenario())


def test_a_waiting_retry_gets_the_answer_once_it_is_kept(db: Database) -> None:
    async def scenario() -> None:
        keys, _ = await keys_on(db)
        request = fingerprint("/svc/Create", b"body")
        assert await keys.claim(TENANT, "k", request) is None
        waiting = asyncio.create_task(keys.claim(TENANT, "k", request))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await keys.keep(TENANT, "k", Answer(grpc.StatusCode.NOT_FOUND, message="gone", headers=(("a", "b"),)))
        assert await waiting == Answer(grpc.StatusCode.NOT_FOUND, message="gone", headers=(("a", "b"),))

    run(db, scenario())


def test_an_unknown_outcome_releases_the_key(db: Database) -> None:
    async def scenario() -> None:
        keys, table = await keys_on(db)
        request = fingerprint("/svc/Create", b"body")
        for status in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.INTERNAL,
        ):
            assert await keys.claim(TENANT, "k", request) is None
            await keys.keep(TENANT, "k", Answer(status, message="maybe"))
        assert await keys.claim(TENANT, "k", request) is None  # released each time
        async with db.read() as conn:
            assert len((await conn.execute(sa.select(table))).all()) == 1

    run(db, scenario())


def test_a_claim_past_its_lease_and_an_answer_past_its_day_are_taken_over_then_purged(db: Database) -> None:
    async def scenario() -> None:
        keys, table = await keys_on(db)
        request = fingerprint("/svc/Create", b"body")
        assert await keys.claim(TENANT, "held", request) is None
        await age(db, table, LEASE + dt.timedelta(seconds=1))
        assert await keys.claim(TENANT, "held", request) is None  # its request died: taken over

        await keys.keep(TENANT, "held", Answer(grpc.StatusCode.OK, b"x"))
        await age(db, table, KEPT_FOR - dt.timedelta(minutes=1))
        assert await keys.claim(TENANT, "held", request) == Answer(grpc.StatusCode.OK, b"x")  # within its day
        await age(db, table, dt.timedelta(minutes=2))
        # Past its day the key names nothing: another request may take it.
        assert await keys.claim(TENANT, "held", fingerprint("/svc/Create", b"new")) is None

        assert await keys.claim(TENANT, "old", request) is None
        await age(db, table, KEPT_FOR + dt.timedelta(minutes=1))
        await keys.purge()
        async with db.read() as conn:
            assert (await conn.execute(sa.select(table))).all() == []

    run(db, scenario())


def test_a_kept_answer_is_sealed_and_opens_only_under_its_key(db: Database) -> None:
    async def scenario() -> None:
        _, table = await keys_on(db)
        keys = IdempotencyKeys(db, table, sealing_key=b"s" * 32)
        request = fingerprint("/svc/CreateKey", b"body")
        secret = b"\x0a\x12hmcp_secret_shown_once"
        assert await keys.claim(TENANT, "k", request) is None
        await keys.keep(TENANT, "k", Answer(grpc.StatusCode.OK, secret))
        async with db.read() as conn:
            (stored,) = (await conn.execute(sa.select(table.c.body))).scalars()
        assert b"hmcp_secret_shown_once" not in stored  # the database never holds it in clear
        assert await keys.claim(TENANT, "k", request) == Answer(grpc.StatusCode.OK, secret)
        # Under another key (the shared secret changed), the answer cannot be replayed: never a 500.
        with pytest.raises(Unavailable):
            await IdempotencyKeys(db, table, sealing_key=b"t" * 32).claim(TENANT, "k", request)

    run(db, scenario())
