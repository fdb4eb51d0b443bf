"""Use cases every tenant resource shares, each an audited transaction."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit import AuditLog
from services.common.batching import GroupCommitWriter, RowRejected, RowSet
from services.common.crud import TenantTable
from services.common.db import Database
from services.common.errors import Conflict, NotFound
from services.common.events.catalogue import announcement
from services.common.events.outbox import Outbox
from services.common.fields import parse_limit, utcnow
from services.common.identity import Identity
from services.common.paging import UNSIGNED, Cursors

Scope = Mapping[str, Any] | None  # parent columns a nested resource's row must also match
Check = Callable[[Any], None]  # refuses a row a write would change (raises), e.g. If-Match


def accept(_row: Any) -> None:
    """The check of a write that is not conditional."""


Event = tuple[str, dict[str, Any]]  # an outbox event: (topic, payload)
View = Callable[[Any], dict[str, Any]]  # a row as its API answers it, as JSON
WRITE_CONFLICT = "The write conflicts with other data; nothing was changed."


@dataclass(frozen=True)
class Page:
    """Rows of a list, and whether more follow the last of them."""

    rows: Sequence[Row[Any]]
    more: bool


async def page_within(
    conn: AsyncConnection,
    table: TenantTable,
    cursors: Cursors,
    *,
    tenant_id: uuid.UUID,
    count: int,
    cursor: str | None,
    filters: Mapping[str, Any],
    since: Mapping[str, Any] | None = None,
) -> Page:
    """A page of the tenant's rows of `table` equal to `filters` (one parent's, which the caller checked
    on `conn`), after the row `cursor` names: `count` rows at most."""
    after = table.after_cursor(cursor, cursors) if cursor is not None else None
    rows = await table.list(
        conn, tenant_id=tenant_id, limit=count + 1, filters=filters, after=after, since=since
    )
    return Page(rows[:count], len(rows) > count)


async def read_page(
    db: Database,
    table: TenantTable,
    cursors: Cursors,
    *,
    tenant_id: uuid.UUID,
    count: int,
    cursor: str | None,
    filters: Mapping[str, Any],
    since: Mapping[str, Any] | None = None,
) -> Page:
    """A page of the tenant's rows of `table` equal to `filters`, after the row `cursor` names, in a read
    of its own (the hot list read): `count` rows at most."""
    after = table.after_cursor(cursor, cursors) if cursor is not None else None
    # One row more than asked: whether another page follows.
    rows = await table.read_page(
        db, tenant_id=tenant_id, limit=count + 1, filters=filters, after=after, since=since
    )
    return Page(rows[:count], len(rows) > count)


class ResourceService:
    """CRUD for one resource; subclasses add rules through before_/after_ hooks inside the transaction."""

    resource = "resource"  # audit name, e.g. "lead"
    not_found = "Not found."
    list_default = 25  # rows a list returns without ?limit=
    list_maximum = 100

    def __init__(
        self,
        *,
        db: Database,
        table: TenantTable,
        audit: AuditLog,
        outbox: Outbox | None = None,
        writes: CreateWrites | None = None,
        cursors: Cursors = UNSIGNED,
        announce: View | None = None,
    ) -> None:
        self._db = db
        self.table = table
        self._audit = audit
        self._outbox = outbox
        self._cursors = cursors
        # With a view, every write announces `<resource>.created|updated|deleted` carrying the row as
        # the API answers it (see services.common.events.catalogue).
        self._announce = announce
        if announce is not None and outbox is None:
            raise TypeError(f"{type(self).__name__} announces its writes but was built without an outbox")
        self._writes = writes or InTransaction()
        self._writes.check(self)

    async def list(
        self,
        caller: Identity,
        *,
        limit: int | None,
        filters: Mapping[str, Any] | None = None,
        cursor: str | None = None,
        since: Mapping[str, Any] | None = None,
    ) -> Page:
        """The caller's rows in list order (limit 1..list_maximum), equal to every given filter, at or
        after every `since` moment (e.g. {"updated_at": …}), after the row `cursor` names."""
        given = {k: v for k, v in (filters or {}).items() if v is not None}
        return await read_page(
            self._db,
            self.table,
            self._cursors,
            tenant_id=caller.tenant_id,
            count=parse_limit(limit, default=self.list_default, maximum=self.list_maximum),
            cursor=cursor,
            filters=given,
            since={k: v for k, v in (since or {}).items() if v is not None},
        )

    def cursor(self, row: Any) -> str:
        """A signed cursor to the rows after `row` in list order."""
        return self.table.cursor(row, self._cursors)

    async def get(self, caller: Identity, row_id: uuid.UUID, *, scope: Scope = None) -> Row[Any]:
        """One row of the caller's tenant (within `scope`'s parent, when given)."""
        row: Row[Any] | None = await self.table.read_one(
            self._db, tenant_id=caller.tenant_id, row_id=row_id, scope=scope
        )
        if row is None:
            raise NotFound(self.not_found)
        return row

    async def create(self, caller: Identity, fields: dict[str, Any]) -> Row[Any]:
        """Creates a row from validated fields: its checks, then the row, its events and its audit entry,
        written together by the service's write strategy."""
        facts = await self.prepare(caller, fields)
        return await self._writes.create(self, caller, self.initial_values(caller, fields), facts)

    @property
    def outbox(self) -> Outbox:
        """Where the service records its events (a service that announces anything is built with one)."""
        if self._outbox is None:
            raise TypeError(f"{type(self).__name__} records events but was built without an outbox")
        return self._outbox

    @property
    def audit(self) -> AuditLog:
        """The audit log every write of the service is recorded in."""
        return self._audit

    async def update(
        self,
        caller: Identity,
        row_id: uuid.UUID,
        fields: dict[str, Any],
        *,
        scope: Scope = None,
        check: Check | None = None,
    ) -> Row[Any]:
        """Applies any subset of validated fields; an empty subset changes nothing. `check` may refuse
        the row as it is (locked until the transaction ends)."""
        facts = await self.prepare(caller, fields)
        async with self.transaction() as conn:
            before = await self.table.get(
                conn, tenant_id=caller.tenant_id, row_id=row_id, scope=scope, for_update=True
            )
            if before is None:
                raise NotFound(self.not_found)
            if check is not None:
                check(before)
            values = await self.before_update(conn, caller, before, fields)
            if not values:
                return before
            row = await self.table.update(
                conn, tenant_id=caller.tenant_id, row_id=row_id, values={**values, "updated_at": utcnow()}
            )
            assert row is not None  # read in this transaction
            await self.after_update(conn, caller, before, row, facts)
            await self._record_events(conn, caller, self.announced("updated", row))
            await self._audit.record(
                conn, caller, resource=self.resource, resource_id=row_id, action="update"
            )
        return row

    async def delete(
        self, caller: Identity, row_id: uuid.UUID, *, scope: Scope = None, check: Check | None = None
    ) -> None:
        """Deletes a row of the caller's tenant; `check` may refuse the row as it is (locked)."""
        async with self.transaction() as conn:
            row = await self.table.get(
                conn, tenant_id=caller.tenant_id, row_id=row_id, scope=scope, for_update=True
            )
            if row is None:
                raise NotFound(self.not_found)
            if check is not None:
                check(row)
            await self.before_delete(conn, caller, row)
            await self._record_events(conn, caller, self.announced("deleted", row))
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

    def announced(self, action: str, row: Any) -> Sequence[Event]:
        """The public event of a write of `row` (none unless the service announces its writes)."""
        if self._announce is None:
            return ()
        return ((f"{self.resource}.{action}", announcement(self._announce(row))),)

    def events_of_create(self, caller: Identity, row: Row[Any], facts: dict[str, Any]) -> Sequence[Event]:
        """Every outbox event a create records: the service's own, then its announcement."""
        return (*self.created_events(caller, row, facts), *self.announced("created", row))

    async def _record_events(self, conn: AsyncConnection, caller: Identity, events: Sequence[Event]) -> None:
        for topic, payload in events:
            await self.outbox.record(conn, tenant_id=caller.tenant_id, topic=topic, payload=payload)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; an integrity error (a race past our own checks) is a conflict, never a 500."""
        try:
            async with self._db.transaction() as conn:
                yield conn
        except IntegrityError:
            raise Conflict(WRITE_CONFLICT) from None

    async def prepare(self, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        """Checks that need other services, run before the transaction opens; returns facts for the hooks."""
        return {}

    def initial_values(self, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        """The values of a new row from its fields: defaults and derived values, without the database."""
        return fields

    async def before_create(
        self, conn: AsyncConnection, caller: Identity, fields: dict[str, Any]
    ) -> dict[str, Any]:
        """Checks a new row against the database and completes its values (in its transaction)."""
        return fields

    def created_events(self, caller: Identity, row: Row[Any], facts: dict[str, Any]) -> Sequence[Event]:
        """The outbox events a create records with its row."""
        return ()

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


class CreateWrites(Protocol):
    """How a resource's creates reach the database (the create pipeline's write strategy)."""

    def check(self, service: ResourceService) -> None:
        """Refuses, when the service is built, a service whose hooks the strategy cannot run."""

    async def create(
        self, service: ResourceService, caller: Identity, values: dict[str, Any], facts: dict[str, Any]
    ) -> Row[Any]: ...


class InTransaction:
    """Each create in a transaction of its own: the checks of before_create, the row, its events and
    its audit entry."""

    def check(self, service: ResourceService) -> None:
        """Runs every hook: any service will do."""

    async def create(
        self, service: ResourceService, caller: Identity, values: dict[str, Any], facts: dict[str, Any]
    ) -> Row[Any]:
        async with service.transaction() as conn:
            values = await service.before_create(conn, caller, values)
            row = await service.table.insert(conn, values=service.new_row(caller, values))
            for topic, payload in service.events_of_create(caller, row, facts):
                await service.outbox.record(conn, tenant_id=caller.tenant_id, topic=topic, payload=payload)
            await service.audit.record(
                conn, caller, resource=service.resource, resource_id=row.id, action="create"
            )
        return row


class GroupCommitted:
    """Concurrent creates share a transaction and one insert per table (group commit): the row, its
    events and its audit entry still commit together, and an answer means its rows are committed.

    There is no transaction to check against before the write: a service whose creates need
    before_create's database checks cannot use it.
    """

    def __init__(self, writer: GroupCommitWriter[RowSet]) -> None:
        self._writer = writer

    def check(self, service: ResourceService) -> None:
        if type(service).before_create is not ResourceService.before_create:
            raise TypeError(f"{type(service).__name__} checks creates in a transaction: not group-committed")

    async def create(
        self, service: ResourceService, caller: Identity, values: dict[str, Any], facts: dict[str, Any]
    ) -> Row[Any]:
        values = service.table.complete(service.new_row(caller, values))
        row = service.table.written(values)
        rows = RowSet()
        rows.add(service.table.table, values)
        for topic, payload in service.events_of_create(caller, row, facts):
            rows.add(
                service.outbox.table,
                service.outbox.row(tenant_id=caller.tenant_id, topic=topic, payload=payload),
            )
        rows.add(
            service.audit.table,
            service.audit.row(caller, resource=service.resource, resource_id=values["id"], action="create"),
        )
        try:
            await self._writer.write(rows)
        except RowRejected:
            raise Conflict(WRITE_CONFLICT) from None
        return row
