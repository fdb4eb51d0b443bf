"""The direct path of the hottest statements: psycopg on PostgreSQL, SQLAlchemy on SQLite, same results."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    Uuid,
    func,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from services.common.batching import GroupCommitWriter
from services.common.crud import TenantTable
from services.common.db import Database
from services.common.errors import ValidationError
from services.common.paging import Cursors

metadata = MetaData()
notes = Table(
    "notes",
    metadata,
    Column("tenant_id", Uuid, primary_key=True),
    Column("id", Uuid, primary_key=True),
    Column("email", String(100), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
documents = Table("documents", metadata, Column("id", Uuid, primary_key=True), Column("body", JSON))
tenant_notes = TenantTable(notes)
records = TenantTable(
    Table(
        "records",
        metadata,
        Column("tenant_id", Uuid, primary_key=True),
        Column("id", Uuid, primary_key=True),
        Column("name", String(100), nullable=False),
        Column("body", Text),
        Column("settings", JSON),
        Column("enabled", Boolean),
        Column("score", Integer),
        Column("due", Date),
        Column("created_at", DateTime(timezone=True)),
    )
)
prices = TenantTable(
    Table(
        "prices",
        metadata,
        Column("tenant_id", Uuid, primary_key=True),
        Column("id", Uuid, primary_key=True),
        Column("amount", Numeric(10, 2)),
    ),
    order_by=[],
)

SIGNED = Cursors(b"a key of the test's own")


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'direct.sqlite3'}"
    return str(request.getfixturevalue("postgres_url"))


def on_database(url: str, test: Callable[[Database], Awaitable[Any]], **options: int) -> Any:
    """Runs `test` against a Database with fresh tables, disposing of it afterwards."""

    async def run() -> Any:
        db = Database(url, schema="public", **options)
        try:
            async with db.transaction() as conn:
                await conn.run_sync(metadata.drop_all)
                await conn.run_sync(metadata.create_all)
            return await test(db)
        finally:
            await db.dispose()

    return asyncio.run(run())


def note(tenant_id: uuid.UUID, email: str) -> dict[str, Any]:
    return {"tenant_id": tenant_id, "id": uuid.uuid4(), "email": email, "created_at": dt.datetime.now(dt.UTC)}


async def emails(db: Database, tenant_id: uuid.UUID, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await tenant_notes.read_among(db, tenant_id=tenant_id, ids=ids, columns=("id", "email"))
    return {row.id: row.email for row in rows}


def test_rows_inserted_directly_are_read_back_by_tenant_with_their_types(database_url: str) -> None:
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    rows = [note(ours, "a@example.com"), note(ours, "b@example.com"), note(theirs, "c@example.com")]

    async def test(db: Database) -> tuple[dict[uuid.UUID, str], list[Any]]:
        async with db.direct_transaction() as conn:
            await conn.insert_many(notes, rows)
        found = await emails(db, ours, [row["id"] for row in rows] + [uuid.uuid4()])
        async with db.direct() as conn:
            query = select(notes.c.id, notes.c.created_at).where(notes.c.tenant_id == ours)
            stored = await conn.fetch(query, {})
        return found, stored

    found, stored = on_database(database_url, test)
    # The other tenant's row is not among ours, even by its id; an unknown id is simply absent.
    assert found == {rows[0]["id"]: "a@example.com", rows[1]["id"]: "b@example.com"}
    assert {row.id for row in stored} == {rows[0]["id"], rows[1]["id"]}
    assert all(isinstance(row.id, uuid.UUID) for row in stored)
    assert {row.created_at.replace(tzinfo=dt.UTC) for row in stored} == {r["created_at"] for r in rows[:2]}


def test_a_row_found_directly_is_the_row_sqlalchemy_reads(database_url: str) -> None:
    tenant = uuid.uuid4()
    full = {
        "tenant_id": tenant,
        "id": uuid.uuid4(),
        "name": "Ada",
        "body": "long text",
        "settings": {"tone": "warm", "limits": [1, 2], "on": True},
        "enabled": False,
        "score": 42,
        "due": dt.date(2027, 1, 31),
        "created_at": dt.datetime(2026, 11, 23, 12, 30, 5, 123456, tzinfo=dt.UTC),
    }
    sparse = {"tenant_id": tenant, "id": uuid.uuid4(), "name": "Bob"}

    async def test(db: Database) -> list[tuple[Any, Any]]:
        async with db.transaction() as conn:
            await conn.execute(insert(records.table), [full, records.complete(sparse)])
        pairs = []
        for tenant_id, row_id in ((tenant, full["id"]), (tenant, sparse["id"]), (uuid.uuid4(), full["id"])):
            found = await records.read_one(db, tenant_id=tenant_id, row_id=row_id)  # direct, asserted below
            async with db.read() as conn:
                read = await records.get(conn, tenant_id=tenant_id, row_id=row_id)
            pairs.append((found, read))
        assert db.goes_direct(records.get_query)
        return pairs

    (found_full, read_full), (found_sparse, read_sparse), other_tenant = on_database(database_url, test)
    assert tuple(found_full) == tuple(read_full)
    assert found_full.settings == full["settings"] and found_full.due == full["due"]
    assert tuple(found_sparse) == tuple(read_sparse)
    assert found_sparse.settings is None and found_sparse.enabled is None
    assert other_tenant == (None, None)  # another tenant's id finds nothing


def test_a_page_read_directly_is_the_list_sqlalchemy_reads(database_url: str) -> None:
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    rows = [
        records.complete(
            {
                "tenant_id": ours if n < 6 else theirs,
                "id": uuid.uuid4(),
                "name": "even" if n % 2 == 0 else "odd",
                "created_at": start + dt.timedelta(minutes=n),
            }
        )
        for n in range(8)
    ]

    async def test(db: Database) -> list[tuple[list[Any], list[Any]]]:
        async with db.transaction() as conn:
            await conn.execute(insert(records.table), rows)
        pages = []
        for limit, filters in ((10, {}), (2, {}), (10, {"name": "even"}), (1, {"name": "odd"})):
            assert db.goes_direct(records.page_query(tuple(filters)))
            page = await records.read_page(db, tenant_id=ours, limit=limit, filters=filters)
            async with db.read() as conn:
                listed = await records.list(conn, tenant_id=ours, limit=limit, filters=filters)
            pages.append(([row.id for row in page], [row.id for row in listed]))
        return pages

    pages = on_database(database_url, test)
    newest_first = [row["id"] for row in reversed(rows[:6])]
    assert [page for page, _ in pages] == [
        newest_first,
        newest_first[:2],
        [i for i in newest_first if i in {r["id"] for r in rows[0:6:2]}],
        newest_first[:1],
    ]
    assert all(page == listed for page, listed in pages)


def test_pages_follow_their_cursors_through_equal_times_directly_and_through_sqlalchemy(
    database_url: str,
) -> None:
    tenant = uuid.uuid4()
    same_time = dt.datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    rows = [
        records.complete(
            {
                "tenant_id": tenant,
                "id": uuid.uuid4(),
                "name": "r",
                "created_at": same_time + dt.timedelta(seconds=n // 3),  # three rows share each time
            }
        )
        for n in range(7)
    ]

    async def walk(db: Database, direct: bool) -> list[list[uuid.UUID]]:
        pages, after = [], None
        while True:
            if direct:
                assert db.goes_direct(records.page_query((), after is not None))
                page = await records.read_page(db, tenant_id=tenant, limit=2, filters={}, after=after)
            else:
                async with db.read() as alchemy:
                    page = await records.list(alchemy, tenant_id=tenant, limit=2, after=after)
            if not page:
                return pages
            pages.append([row.id for row in page])
            after = records.after_cursor(records.cursor(page[-1], SIGNED), SIGNED)

    async def test(db: Database) -> tuple[list[list[uuid.UUID]], list[list[uuid.UUID]]]:
        async with db.transaction() as conn:
            await conn.execute(insert(records.table), rows)
        return await walk(db, direct=True), await walk(db, direct=False)

    direct_pages, alchemy_pages = on_database(database_url, test)
    newest_first = [r["id"] for r in sorted(rows, key=lambda r: (r["created_at"], r["id"]), reverse=True)]
    assert [i for page in direct_pages for i in page] == newest_first
    assert direct_pages == alchemy_pages and [len(p) for p in direct_pages] == [2, 2, 2, 1]


def test_a_read_of_a_value_psycopg_would_give_differently_stays_on_sqlalchemy(postgres_url: str) -> None:
    async def test(db: Database) -> tuple[bool, bool]:
        return db.goes_direct(prices.get_query), db.goes_direct(records.get_query)

    assert on_database(postgres_url, test) == (False, True)


def test_a_refused_row_raises_integrity_error_and_undoes_its_whole_transaction(database_url: str) -> None:
    tenant = uuid.uuid4()
    first, second = note(tenant, "a@example.com"), note(tenant, "b@example.com")

    async def test(db: Database) -> dict[uuid.UUID, str]:
        with pytest.raises(IntegrityError):
            async with db.direct_transaction() as conn:
                await conn.insert_many(notes, [first])
                await conn.insert_many(notes, [second, {**second, "email": "again@example.com"}])
        return await emails(db, tenant, [first["id"], second["id"]])

    assert on_database(database_url, test) == {}


def test_a_statement_cancelled_midway_frees_its_connection_for_the_next_caller(postgres_url: str) -> None:
    tenant = uuid.uuid4()
    row = note(tenant, "a@example.com")

    async def test(db: Database) -> dict[uuid.UUID, str]:
        async def sleep() -> None:
            async with db.direct() as conn:
                await conn.fetch(select(func.pg_sleep(30)), {})

        async with db.direct_transaction() as conn:
            await conn.insert_many(notes, [row])
        sleeping = asyncio.create_task(sleep())
        await asyncio.sleep(0.3)
        sleeping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sleeping
        # One connection in all: answered at once, so pg_sleep no longer holds it.
        return await asyncio.wait_for(emails(db, tenant, [row["id"]]), timeout=5)

    assert on_database(postgres_url, test, direct_pool_size=1) == {row["id"]: "a@example.com"}


def test_slow_reads_never_hold_every_direct_connection_from_a_transaction(postgres_url: str) -> None:
    tenant = uuid.uuid4()
    row = note(tenant, "a@example.com")

    async def test(db: Database) -> tuple[bool, dict[uuid.UUID, str]]:
        async def slow_read() -> None:
            async with db.direct() as conn:
                await conn.fetch(select(func.pg_sleep(2)), {})

        reads = [asyncio.create_task(slow_read()) for _ in range(2)]
        await asyncio.sleep(0.2)  # both reads under way or waiting for a connection
        async with db.direct_transaction() as conn:
            await conn.insert_many(notes, [row])
        reads_still_running = not any(read.done() for read in reads)
        await asyncio.gather(*reads)
        return reads_still_running, await emails(db, tenant, [row["id"]])

    # Two connections: one is kept from reads, so the write commits while the first read sleeps.
    assert on_database(postgres_url, test, direct_pool_size=2) == (True, {row["id"]: "a@example.com"})


def test_a_type_psycopg_cannot_take_as_is_is_refused_before_anything_runs(postgres_url: str) -> None:
    async def test(db: Database) -> None:
        async with db.direct_transaction() as conn:
            await conn.insert_many(documents, [{"id": uuid.uuid4(), "body": {"a": 1}}])

    with pytest.raises(TypeError, match="body"):
        on_database(postgres_url, test)


def test_an_unreachable_database_raises_sqlalchemy_operational_error() -> None:
    async def test() -> None:
        db = Database("postgresql://hydra@127.0.0.1:1/none", schema="public")
        try:
            async with db.direct() as conn:
                await conn.fetch(select(notes.c.id), {})
        finally:
            await db.dispose()

    with pytest.raises(OperationalError):
        asyncio.run(test())


def test_a_row_postgresql_refuses_as_malformed_fails_alone_in_its_group_commit(postgres_url: str) -> None:
    """A NUL byte (which PostgreSQL text cannot hold) in one request of a batch: the others commit,
    whatever their tenant, and the bad one is a validation error, not a server error."""
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    good = [note(ours if n % 2 else theirs, f"n{n}@example.com") for n in range(40)]
    bad = note(ours, "nul\x00@example.com")

    async def test(db: Database) -> tuple[list[Any], int]:
        async def insert_many(conn: Any, batch: Any) -> None:
            await conn.insert_many(notes, batch)

        writer = GroupCommitWriter(db=db, insert_many=insert_many, logger=logging.getLogger("test"))
        loop = asyncio.create_task(writer.run())
        outcomes = await asyncio.gather(
            *(writer.write(row) for row in [*good[:20], bad, *good[20:]]), return_exceptions=True
        )
        loop.cancel()
        async with db.direct() as conn:
            (count,) = await conn.fetch(select(func.count()).select_from(notes), {})
        return outcomes, count[0]

    outcomes, count = on_database(postgres_url, test)
    assert count == 40
    assert [o for o in outcomes if o is not None] == [outcomes[20]]
    assert isinstance(outcomes[20], ValidationError)


def test_tasks_waiting_for_a_connection_are_counted_in_both_pools(postgres_url: str) -> None:
    """With every connection of a pool held, the next caller waits, and is counted until it gets one."""

    async def main() -> tuple[list[int], int]:
        db = Database(postgres_url, schema="public", pool_size=1, direct_pool_size=1)  # 2 and 1 connections
        release = asyncio.Event()

        async def hold(connection: Any) -> None:
            async with connection:
                await release.wait()

        holders = [asyncio.create_task(hold(db.transaction())) for _ in range(2)]
        holders.append(asyncio.create_task(hold(db.direct_transaction())))
        await asyncio.sleep(0.3)
        seen = [db.pool_waiting()]
        waiting = [asyncio.create_task(hold(db.read())), asyncio.create_task(hold(db.direct_transaction()))]
        await asyncio.sleep(0.3)
        seen.append(db.pool_waiting())
        release.set()
        await asyncio.gather(*holders, *waiting)
        after = db.pool_waiting()
        await db.dispose()
        return seen, after

    seen, after = asyncio.run(main())
    assert seen == [0, 2] and after == 0
