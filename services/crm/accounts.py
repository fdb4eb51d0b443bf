"""Account use cases: lifecycle transitions recorded and announced; contacts block deletion."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit import AuditLog
from services.common.crud import TenantTable
from services.common.db import Database
from services.common.errors import Conflict
from services.common.events.outbox import Outbox
from services.common.identity import Identity
from services.common.paging import UNSIGNED, Cursors
from services.common.resource import CreateWrites, ResourceService, View
from services.crm import repository


class AccountService(ResourceService):
    """Accounts: lifecycle transitions are recorded and announced; contacts block deletion."""

    resource = "account"
    not_found = "Account not found."

    def __init__(
        self,
        *,
        db: Database,
        table: TenantTable,
        audit: AuditLog,
        contacts: TenantTable,
        outbox: Outbox,
        writes: CreateWrites | None = None,
        cursors: Cursors = UNSIGNED,
        announce: View | None = None,
    ) -> None:
        super().__init__(
            db=db, table=table, audit=audit, outbox=outbox, writes=writes, cursors=cursors, announce=announce
        )
        self._contacts = contacts

    def initial_values(self, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        return {"lifecycle_stage": "prospect", **fields}

    async def after_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], row: Row[Any], facts: dict[str, Any]
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
        await self.outbox.record(
            conn, tenant_id=caller.tenant_id, topic="account.stage_changed", payload=change
        )
        if row.lifecycle_stage == "at_risk":
            await self.outbox.record(
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
