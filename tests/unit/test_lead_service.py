"""Lead use cases against an in-memory repository: rules, tenancy, not-found."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from services.common.errors import NotFound, ValidationError
from services.common.identity import Identity
from services.common.resource import GroupCommitted
from services.crm.leads import LeadService


class FakeDatabase:
    """Transactions without a database: the fake repository ignores the connection."""

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield None

    read = transaction


class FakeTable:
    """TenantTable over a dict keyed by (tenant_id, id)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[uuid.UUID, uuid.UUID], dict[str, Any]] = {}

    async def insert(self, conn: None, *, values: dict[str, Any]) -> SimpleNamespace:
        self.rows[(values["tenant_id"], values["id"])] = dict(values)
        return SimpleNamespace(**values)

    def _find(self, tenant_id: uuid.UUID, row_id: uuid.UUID, scope: dict | None) -> dict[str, Any] | None:
        row = self.rows.get((tenant_id, row_id))
        if row is None or any(row.get(k) != v for k, v in (scope or {}).items()):
            return None
        return row

    async def read_one(
        self, db: FakeDatabase, *, tenant_id: uuid.UUID, row_id: uuid.UUID, scope: dict | None = None
    ) -> SimpleNamespace | None:
        return await self.get(None, tenant_id=tenant_id, row_id=row_id, scope=scope)

    async def read_page(
        self,
        db: FakeDatabase,
        *,
        tenant_id: uuid.UUID,
        limit: int,
        filters: dict,
        after: Any = None,
        since: dict | None = None,
    ) -> list[SimpleNamespace]:
        return await self.list(
            None, tenant_id=tenant_id, limit=limit, filters=filters, after=after, since=since
        )

    async def get(
        self,
        conn: None,
        *,
        tenant_id: uuid.UUID,
        row_id: uuid.UUID,
        scope: dict | None = None,
        for_update: bool = False,  # one caller at a time here: nothing to lock
    ) -> SimpleNamespace | None:
        row = self._find(tenant_id, row_id, scope)
        return SimpleNamespace(**row) if row else None

    async def list(
        self,
        conn: None,
        *,
        tenant_id: uuid.UUID,
        limit: int,
        filters: dict,
        after: Any = None,
        since: dict | None = None,
    ) -> list[SimpleNamespace]:
        rows = [r for (t, _), r in self.rows.items() if t == tenant_id]
        rows = [r for r in rows if all(r[column] >= moment for column, moment in (since or {}).items())]
        rows.sort(key=lambda r: (r["created_at"], str(r["id"])), reverse=True)
        return [SimpleNamespace(**r) for r in rows[:limit]]

    async def update(
        self,
        conn: None,
        *,
        tenant_id: uuid.UUID,
        row_id: uuid.UUID,
        values: dict[str, Any],
        scope: dict | None = None,
    ) -> SimpleNamespace | None:
        row = self._find(tenant_id, row_id, scope)
        if row is None:
            return None
        row.update(values)
        return SimpleNamespace(**row)

    async def delete(
        self, conn: None, *, tenant_id: uuid.UUID, row_id: uuid.UUID, scope: dict | None = None
    ) -> bool:
        if self._find(tenant_id, row_id, scope) is None:
            return False
        return self.rows.pop((tenant_id, row_id), None) is not None


class FakeAudit:
    """Keeps audit entries in a list."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []

    async def record(
        self, conn: None, caller: Identity, *, resource: str, resource_id: uuid.UUID, action: str
    ) -> None:
        self.entries.append((resource, action))


def caller() -> Identity:
    return Identity(tenant_id=uuid.uuid4(), key_id="k", scopes=frozenset({"crm:read", "crm:write"}))


@pytest.fixture
def service() -> LeadService:
    return LeadService(db=FakeDatabase(), table=FakeTable(), audit=FakeAudit())  # type: ignore[arg-type]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_create_defaults_source_and_stamps_times(service: LeadService) -> None:
    row = run(service.create(caller(), {"email": "a@example.com"}))
    assert row.source == "public_api"
    assert row.created_at == row.updated_at
    assert row.created_at.tzinfo is not None


def test_create_needs_one_non_null_field(service: LeadService) -> None:
    with pytest.raises(ValidationError):
        run(service.create(caller(), {}))
    with pytest.raises(ValidationError):
        run(service.create(caller(), {"email": None, "name": None}))


def test_explicit_source_wins(service: LeadService) -> None:
    assert run(service.create(caller(), {"name": "A", "source": "zapier"})).source == "zapier"


def test_another_tenants_lead_is_not_found(service: LeadService) -> None:
    owner, stranger = caller(), caller()
    lead = run(service.create(owner, {"name": "A"}))
    for action in (
        service.get(stranger, lead.id),
        service.update(stranger, lead.id, {"name": "B"}),
        service.delete(stranger, lead.id),
    ):
        with pytest.raises(NotFound):
            run(action)
    assert run(service.get(owner, lead.id)).name == "A"


def test_update_applies_subset_and_touches_updated_at(service: LeadService) -> None:
    who = caller()
    lead = run(service.create(who, {"name": "A", "phone": "1"}))
    updated = run(service.update(who, lead.id, {"phone": None}))
    assert (updated.name, updated.phone) == ("A", None)
    assert updated.updated_at >= lead.created_at


def test_empty_update_returns_the_lead_unchanged(service: LeadService) -> None:
    who = caller()
    lead = run(service.create(who, {"name": "A"}))
    assert run(service.update(who, lead.id, {})).updated_at == lead.updated_at


def test_list_is_tenant_scoped_newest_first_and_limited(service: LeadService) -> None:
    who = caller()
    names = [run(service.create(who, {"name": str(i)})).name for i in range(5)]
    run(service.create(caller(), {"name": "other tenant"}))
    listed = run(service.list(who, limit=3))
    assert [r.name for r in listed.rows] == names[::-1][:3]
    assert listed.more
    assert not run(service.list(who, limit=5)).more


def test_delete_twice_is_not_found(service: LeadService) -> None:
    who = caller()
    lead = run(service.create(who, {"name": "A"}))
    run(service.delete(who, lead.id))
    with pytest.raises(NotFound):
        run(service.delete(who, lead.id))


def test_every_write_is_audited_once_and_reads_are_not() -> None:
    audit = FakeAudit()
    service = LeadService(db=FakeDatabase(), table=FakeTable(), audit=audit)  # type: ignore[arg-type]
    who = caller()
    lead = run(service.create(who, {"name": "A"}))
    run(service.get(who, lead.id))
    run(service.update(who, lead.id, {"name": "B"}))
    run(service.update(who, lead.id, {}))
    run(service.delete(who, lead.id))
    assert audit.entries == [("lead", "create"), ("lead", "update"), ("lead", "delete")]


def test_a_service_that_checks_creates_in_a_transaction_cannot_be_built_group_committed() -> None:
    class CheckedLeads(LeadService):
        async def before_create(self, conn: Any, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
            return fields

    # A group commit has no transaction to run before_create's checks in.
    with pytest.raises(TypeError, match="not group-committed"):
        CheckedLeads(
            db=FakeDatabase(),  # type: ignore[arg-type]
            table=FakeTable(),  # type: ignore[arg-type]
            audit=FakeAudit(),  # type: ignore[arg-type]
            writes=GroupCommitted(writer=None),  # type: ignore[arg-type]
        )
    # Leads check their fields without the database: they can be.
    LeadService(
        db=FakeDatabase(),  # type: ignore[arg-type]
        table=FakeTable(),  # type: ignore[arg-type]
        audit=FakeAudit(),  # type: ignore[arg-type]
        writes=GroupCommitted(writer=None),  # type: ignore[arg-type]
    )
