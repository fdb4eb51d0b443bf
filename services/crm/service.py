"""crm use cases: the rules of leads, accounts and contacts on top of the shared resource use cases."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit import AuditLog
from services.common.crud import TenantTable
from services.common.db import Database
from services.common.errors import Conflict, FieldError, ValidationError
from services.common.identity import Identity
from services.common.outbox import Outbox
from services.common.resource import ResourceService
from services.crm import repository

DEFAULT_SOURCE = "public_api"
LEAD_FIELDS = ("email", "name", "phone", "company", "source")


class LeadService(ResourceService):
    """Leads: any subset of contact details, at least one of them."""

    resource = "lead"
    not_found = "Lead not found."

    async def before_create(
        self, conn: AsyncConnection, caller: Identity, fields: dict[str, Any]
    ) -> dict[str, Any]:
        if not any(fields.get(name) is not None for name in LEAD_FIELDS):
            message = f"At least one of {', '.join(LEAD_FIELDS)} is required."
            raise ValidationError(FieldError(("body",), message, "missing"), message=message)
        return {"source": DEFAULT_SOURCE, **fields}


class ContactService(ResourceService):
    """Contacts: always attached to an account of the caller's tenant."""

    resource = "contact"
    not_found = "Contact not found."

    def __init__(self, *, db: Database, table: TenantTable, audit: AuditLog, accounts: TenantTable) -> None:
        super().__init__(db=db, table=table, audit=audit)
        self._accounts = accounts

    async def _require_account(self, conn: AsyncConnection, caller: Identity, fields: dict[str, Any]) -> None:
        if "account_id" not in fields:
            return
        if await self._accounts.get(conn, tenant_id=caller.tenant_id, row_id=fields["account_id"]) is None:
            raise ValidationError(FieldError(("body", "account_id"), "Account not found", "not_found"))

    async def before_create(
        self, conn: AsyncConnection, caller: Identity, fields: dict[str, Any]
    ) -> dict[str, Any]:
        await self._require_account(conn, caller, fields)
        return {"source": DEFAULT_SOURCE, **fields}

    async def before_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], fields: dict[str, Any]
    ) -> dict[str, Any]:
        await self._require_account(conn, caller, fields)
        return fields


class AccountService(ResourceService):
    """Accounts: lifecycle transitions are recorded and announced; contacts block deletion."""

    resource = "account"
    not_found = "Account not found."

    def __init__(
        self, *, db: Database, table: TenantTable, audit: AuditLog, contacts: TenantTable, outbox: Outbox
    ) -> None:
        super().__init__(db=db, table=table, audit=audit)
        self._contacts = contacts
        self._outbox = outbox

    async def before_create(
        self, conn: AsyncConnection, caller: Identity, fields: dict[str, Any]
    ) -> dict[str, Any]:
        return {"lifecycle_stage": "prospect", **fields}

    async def after_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], row: Row[Any]
    ) -> None:
        if before.lifecycle_stage == row.lifecycle_stage:
            return
        await repository.insert_lifecycle_event(
            conn,
            tenant_id=caller.tenant_id,
            account_id=row.id,
            from_stage=before.lifecycle_stage,
            to_stage=row.lifecycle_stage,
        )
        change = {"account_id": str(row.id), "from": before.lifecycle_stage, "to": row.lifecycle_stage}
        await self._outbox.record(
            conn, tenant_id=caller.tenant_id, topic="account.stage_changed", payload=change
        )
        if row.lifecycle_stage == "at_risk":
            await self._outbox.record(
                conn, tenant_id=caller.tenant_id, topic="account.went_at_risk", payload=change
            )

    async def before_delete(self, conn: AsyncConnection, caller: Identity, row: Row[Any]) -> None:
        blocking = await self._contacts.count(conn, tenant_id=caller.tenant_id, account_id=row.id)
        if blocking:
            raise Conflict(
                f"Account has {blocking} contact(s); reassign or delete them first.",
                code="fk_blocked",
                blockers={"contacts": blocking},
            )
