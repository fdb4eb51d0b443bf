"""Use cases every tenant resource shares, each an audited transaction."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit import AuditLog
from services.common.crud import TenantTable
from services.common.db import Database
from services.common.errors import Conflict, NotFound
from services.common.fields import parse_limit, utcnow
from services.common.identity import Identity

Scope = Mapping[str, Any] | None  # parent columns a nested resource's row must also match
WRITE_CONFLICT = "The write conflicts with other data; nothing was changed."


@dataclass(frozen=True)
class Page:
    """Rows of a list, and whether more follow the last of them."""

    rows: Sequence[Row[Any]]
    more: bool


class ResourceService:
    """CRUD for one resource; subclasses add rules through before_/after_ hooks inside the transaction."""

    resource = "resource"  # audit name, e.g. "lead"
    not_found = "Not found."
    list_default = 25  # rows a list returns without ?limit=
    list_maximum = 100

    def __init__(self, *, db: Database, table: TenantTable, audit: AuditLog) -> None:
        self._db = db
        self.table = table
        self._audit = audit
        # GET and list are the hot reads: on psycopg directly where the table's types allow.
        self._get_goes_direct = db.goes_direct(table.get_query)

    async def list(
        self,
        caller: Identity,
        *,
        limit: int | None,
        filters: Mapping[str, Any] | None = None,
        cursor: str | None = None,
    ) -> Page:
        """The caller's rows in list order (limit 1..list_maximum), equal to every given filter,
        after the row `cursor` names (see TenantTable.cursor)."""
        count = parse_limit(limit, default=self.list_default, maximum=self.list_maximum)
        given = {k: v for k, v in (filters or {}).items() if v is not None}
        after = self.table.after_cursor(cursor) if cursor is not None else None
        # One row more than asked: whether another page follows.
        if self._get_goes_direct and self._db.goes_direct(self.table.page_query(tuple(given), bool(after))):
            async with self._db.direct() as direct:
                rows = await self.table.page(
                    direct, tenant_id=caller.tenant_id, limit=count + 1, filters=given, after=after
                )
        else:
            async with self._db.read() as conn:
                rows = await self.table.list(
                    conn, tenant_id=caller.tenant_id, limit=count + 1, filters=given, after=after
                )
        return Page(rows[:count], len(rows) > count)

    async def get(self, caller: Identity, row_id: uuid.UUID, *, scope: Scope = None) -> Row[Any]:
        """One row of the caller's tenant (within `scope`'s parent, when given)."""
        if not scope and self._get_goes_direct:
            async with self._db.direct() as direct:
                row = await self.table.find(direct, tenant_id=caller.tenant_id, row_id=row_id)
        else:
            async with self._db.read() as conn:
                row = await self.table.get(conn, tenant_id=caller.tenant_id, row_id=row_id, scope=scope)
        if row is None:
            raise NotFound(self.not_found)
        return row

    async def create(self, caller: Identity, fields: dict[str, Any]) -> Row[Any]:
        """Creates a row from validated fields."""
        facts = await self.prepare(caller, fields)
        async with self._transaction() as conn:
            values = await self.before_create(conn, caller, fields)
            row = await self.table.insert(conn, values=self.new_row(caller, values))
            await self.after_create(conn, caller, row, facts)
            await self._audit.record(
                conn, caller, resource=self.resource, resource_id=row.id, action="create"
            )
        return row

    async def update(
        self, caller: Identity, row_id: uuid.UUID, fields: dict[str, Any], *, scope: Scope = None
    ) -> Row[Any]:
        """Applies any subset of validated fields; an empty subset changes nothing."""
        facts = await self.prepare(caller, fields)
        async with self._transaction() as conn:
            before = await self.table.get(conn, tenant_id=caller.tenant_id, row_id=row_id, scope=scope)
            if before is None:
                raise NotFound(self.not_found)
            values = await self.before_update(conn, caller, before, fields)
            if not values:
                return before
            row = await self.table.update(
                conn, tenant_id=caller.tenant_id, row_id=row_id, values={**values, "updated_at": utcnow()}
            )
            assert row is not None  # read in this transaction
            await self.after_update(conn, caller, before, row, facts)
            await self._audit.record(
                conn, caller, resource=self.resource, resource_id=row_id, action="update"
            )
        return row

    async def delete(self, caller: Identity, row_id: uuid.UUID, *, scope: Scope = None) -> None:
        """Deletes a row of the caller's tenant."""
        async with self._transaction() as conn:
            row = await self.table.get(conn, tenant_id=caller.tenant_id, row_id=row_id, scope=scope)
            if row is None:
                raise NotFound(self.not_found)
            await self.before_delete(conn, caller, row)
            await self.table.delete(conn, tenant_id=caller.tenant_id, row_id=row_id)
            await self._audit.record(
                conn, caller, resource=self.resource, resource_id=row_id, action="delete"
            )

    def new_row(self, caller: Identity, values: Mapping[str, Any]) -> dict[str, Any]:
        """A new row of the caller's tenant: `values`, a fresh id and both timestamps."""
        now = utcnow()
        return {
            **values,
            "tenant_id": caller.tenant_id,
            "id": uuid.uuid4(),
            "created_at": now,
            "updated_at": now,
        }

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; an integrity error (a race past our own checks) is a conflict, never a 500."""
        try:
            async with self._db.transaction() as conn:
                yield conn
        except IntegrityError:
            raise Conflict(WRITE_CONFLICT) from None

    async def prepare(self, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        """Checks that need other services, run before the transaction opens; returns facts for the hooks."""
        return {}

    async def before_create(
        self, conn: AsyncConnection, caller: Identity, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """Checks and completes the values of a new row."""
        return fields

    async def after_create(
        self, conn: AsyncConnection, caller: Identity, row: Row[Any], facts: dict[str, Any]
    ) -> None:
        """Side effects of a create (outbox events)."""

    async def before_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], fields: dict[str, Any]
    ) -> dict[str, Any]:
        """Checks an update; returns the values to write."""
        return fields

    async def after_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], row: Row[Any], facts: dict[str, Any]
    ) -> None:
        """Side effects of an update (outbox events)."""

    async def before_delete(self, conn: AsyncConnection, caller: Identity, row: Row[Any]) -> None:
        """Refuses a delete that other rows block, and records its side effects."""
