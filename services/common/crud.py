"""Tenant-scoped queries shared by every resource table; never commits (the service owns the transaction)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    DateTime,
    Integer,
    Row,
    Select,
    Table,
    Uuid,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine.result import result_tuple
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

from services.common.db import Database
from services.common.paging import Cursors


class TenantTable:
    """CRUD on one table whose primary key is (tenant_id, id); every query is scoped by tenant."""

    def __init__(self, table: Table, *, order_by: Sequence[Any] | None = None) -> None:
        self.table = table
        c = table.c
        self._order = list(order_by) if order_by is not None else [c.created_at.desc(), c.id.desc()]
        # The hot read is built once; only its parameters change per request.
        self.get_query = select(table).where(
            c.tenant_id == bindparam("tenant_id"), c.id == bindparam("row_id")
        )
        self._insert = insert(table).returning(*table.c)
        self._row = result_tuple([column.name for column in table.c])
        self._among: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._pages: dict[tuple[tuple[str, ...], tuple[str, ...], bool], Select[Any]] = {}
        self._sort, self._descending = _sort_columns(self._order)

    async def list(
        self,
        conn: AsyncConnection,
        *,
        tenant_id: uuid.UUID,
        limit: int,
        filters: Mapping[str, Any] | None = None,
        after: Sequence[Any] | None = None,
        since: Mapping[str, Any] | None = None,
    ) -> Sequence[Row[Any]]:
        """The tenant's rows in list order, equal to every given filter, `limit` at most.

        `after`: only rows past the row with these sort values (see `cursor` and `after_cursor`).
        `since`: only rows whose columns are at or after these values (e.g. updated_at).
        """
        given, at_least = dict(filters or {}), dict(since or {})
        query = self.page_query(tuple(given), after is not None, tuple(at_least))
        params = self._page_params(tenant_id, limit, given, after, at_least)
        rows: Sequence[Row[Any]] = (await conn.execute(query, params)).all()
        return rows

    async def read_page(
        self,
        db: Database,
        *,
        tenant_id: uuid.UUID,
        limit: int,
        filters: Mapping[str, Any],
        after: Sequence[Any] | None = None,
        since: Mapping[str, Any] | None = None,
    ) -> Sequence[Any]:
        """`list` in its own read, on psycopg directly where this table's types allow (the hot read)."""
        at_least = dict(since or {})
        query = self.page_query(tuple(filters), after is not None, tuple(at_least))
        if db.goes_direct(query):
            async with db.direct() as direct:
                return await direct.fetch(
                    query, self._page_params(tenant_id, limit, filters, after, at_least)
                )
        async with db.read() as conn:
            return await self.list(
                conn, tenant_id=tenant_id, limit=limit, filters=filters, after=after, since=at_least
            )

    async def read_one(
        self, db: Database, *, tenant_id: uuid.UUID, row_id: uuid.UUID, scope: Mapping[str, Any] | None = None
    ) -> Any | None:
        """`get` in its own read, on psycopg directly where this table's types allow (the hot read)."""
        if not scope and db.goes_direct(self.get_query):
            async with db.direct() as direct:
                rows = await direct.fetch(self.get_query, {"tenant_id": tenant_id, "row_id": row_id})
                return rows[0] if rows else None
        async with db.read() as conn:
            return await self.get(conn, tenant_id=tenant_id, row_id=row_id, scope=scope)

    def page_query(
        self, filtered: tuple[str, ...], after: bool = False, since: tuple[str, ...] = ()
    ) -> Select[Any]:
        """The list statement filtering on the `filtered` columns (and past a cursor, if `after`; at or
        after a moment on the `since` columns): built once per shape, values bound."""
        query = self._pages.get((filtered, since, after))
        if query is None:
            c = self.table.c
            where = [c.tenant_id == bindparam("tenant_id")]
            where += [c[name] == bindparam(f"filter_{name}") for name in filtered]
            where += [c[name] >= bindparam(f"since_{name}", type_=c[name].type) for name in since]
            if after:
                if not self._sort:
                    raise ValueError("an unsorted list cannot be paged by cursor")
                past = [bindparam(f"after_{col.name}", type_=col.type) for col in self._sort]
                sort, values = tuple_(*self._sort), tuple_(*past)
                where.append(sort < values if self._descending else sort > values)
            query = self._pages[(filtered, since, after)] = (
                select(self.table)
                .where(*where)
                .order_by(*self._order)
                .limit(bindparam("limit", type_=Integer))
            )
        return query

    def sort_values(self, row: Any) -> Sequence[Any]:
        """The values `row` is sorted by in list order: what a cursor to the rows after it holds."""
        return [getattr(row, col.name) for col in self._sort]

    def cursor(self, row: Any, cursors: Cursors) -> str:
        """An opaque cursor to the rows after `row` in list order."""
        return cursors.encode(self.sort_values(row))

    def after_cursor(self, cursor: str, cursors: Cursors) -> Sequence[Any]:
        """The sort values a cursor from `cursor` holds (a validation error if it is not one of ours)."""
        return cursors.decode(cursor, [_python_type(col) for col in self._sort])

    def _page_params(
        self,
        tenant_id: uuid.UUID,
        limit: int,
        filters: Mapping[str, Any],
        after: Sequence[Any] | None,
        since: Mapping[str, Any],
    ) -> dict[str, Any]:
        """The values `page_query` binds."""
        params = {"tenant_id": tenant_id, "limit": limit, **{f"filter_{k}": v for k, v in filters.items()}}
        params.update({f"since_{k}": v for k, v in since.items()})
        for col, value in zip(self._sort, after or (), strict=False):
            params[f"after_{col.name}"] = value
        return params

    async def get(
        self,
        conn: AsyncConnection,
        *,
        tenant_id: uuid.UUID,
        row_id: uuid.UUID,
        scope: Mapping[str, Any] | None = None,
        for_update: bool = False,
    ) -> Row[Any] | None:
        """One row of the tenant (and of `scope`'s parent columns, when given), or None; `for_update`
        locks it until the transaction ends, so no other writer changes it between this read and the
        write that follows."""
        if not scope and not for_update:
            return (await conn.execute(self.get_query, {"tenant_id": tenant_id, "row_id": row_id})).first()
        match = self._match(tenant_id, row_id, scope)
        if for_update and conn.dialect.name == "sqlite":
            # SQLite has no row locks, and its driver begins a transaction at the first write: touching
            # the row first takes the database's write lock, and the read after it sees the last commit.
            id_column = self.table.c.id
            await conn.execute(update(self.table).where(*match).values({id_column: id_column}))
        query = select(self.table).where(*match)
        return (await conn.execute(query.with_for_update() if for_update else query)).first()

    async def read_among(
        self,
        db: Database,
        *,
        tenant_id: uuid.UUID,
        ids: Collection[uuid.UUID],
        columns: Sequence[str],
    ) -> Sequence[Row[Any]]:
        """The tenant's rows whose id is one of `ids` (in no particular order), with only `columns`, in
        its own read (psycopg directly on PostgreSQL: checked in batches by other services)."""
        async with db.direct() as conn:
            query = self._among_query(conn.dialect, columns)
            return await conn.fetch(query, {"tenant_id": tenant_id, "ids": list(ids)})

    def _among_query(self, dialect: str, columns: Sequence[str]) -> Select[Any]:
        """read_among's statement for this dialect and these columns (built once, values bound)."""
        key = (dialect, tuple(columns))
        query = self._among.get(key)
        if query is None:
            c = self.table.c
            # PostgreSQL: one array parameter, so every batch size shares one prepared statement.
            match = (
                c.id == any_(bindparam("ids", type_=postgresql.ARRAY(Uuid)))
                if dialect == "postgresql"
                else c.id.in_(bindparam("ids", expanding=True))
            )
            query = self._among[key] = select(*(c[name] for name in columns)).where(
                c.tenant_id == bindparam("tenant_id"), match
            )
        return query

    def _match(
        self, tenant_id: uuid.UUID, row_id: uuid.UUID, scope: Mapping[str, Any] | None
    ) -> Sequence[Any]:
        c = self.table.c
        return [c.tenant_id == tenant_id, c.id == row_id, *(c[k] == v for k, v in (scope or {}).items())]

    async def insert(self, conn: AsyncConnection, *, values: Mapping[str, Any]) -> Row[Any]:
        """Inserts a row and returns it as stored."""
        return (await conn.execute(self._insert, dict(values))).one()

    def complete(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` with every column of the table (NULL where not given), so rows batch in one shape."""
        return {column.name: values.get(column.name) for column in self.table.c}

    def written(self, values: Mapping[str, Any]) -> Row[Any]:
        """The row `values` become once inserted, not read back (only for tables without server defaults)."""
        return self._row([values.get(column.name) for column in self.table.c])

    async def update(
        self,
        conn: AsyncConnection,
        *,
        tenant_id: uuid.UUID,
        row_id: uuid.UUID,
        values: Mapping[str, Any],
        scope: Mapping[str, Any] | None = None,
    ) -> Row[Any] | None:
        """Updates a row of the tenant; returns it as stored, or None if there is none."""
        query = (
            update(self.table)
            .where(*self._match(tenant_id, row_id, scope))
            .values(**values)
            .returning(*self.table.c)
        )
        return (await conn.execute(query)).first()

    async def delete(
        self,
        conn: AsyncConnection,
        *,
        tenant_id: uuid.UUID,
        row_id: uuid.UUID,
        scope: Mapping[str, Any] | None = None,
    ) -> bool:
        """Deletes a row of the tenant; False if there was none."""
        result = await conn.execute(delete(self.table).where(*self._match(tenant_id, row_id, scope)))
        return bool(result.rowcount)

    async def count(self, conn: AsyncConnection, *, tenant_id: uuid.UUID, **equals: Any) -> int:
        """How many of the tenant's rows equal the given column values."""
        query = select(func.count()).select_from(self.table).where(self.table.c.tenant_id == tenant_id)
        for column, value in equals.items():
            query = query.where(self.table.c[column] == value)
        return int((await conn.execute(query)).scalar_one())


def _sort_columns(order: Sequence[Any]) -> tuple[list[Any], bool]:
    """The columns a list is sorted by, and whether descending (a cursor needs one direction for all)."""
    columns: list[Any] = []
    directions = set()
    for term in order:
        if isinstance(term, UnaryExpression) and term.modifier in (operators.desc_op, operators.asc_op):
            columns.append(term.element)
            directions.add(term.modifier is operators.desc_op)
        else:
            columns.append(term)
            directions.add(False)
    if len(directions) > 1:
        raise ValueError("a list sorted both ways cannot be paged by cursor")
    return columns, bool(directions) and directions.pop()


def _python_type(column: Any) -> type:
    if isinstance(column.type, DateTime):
        return dt.datetime
    if isinstance(column.type, Uuid):
        return uuid.UUID
    return str
