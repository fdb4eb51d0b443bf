"""Ticket use cases: crm references checked over gRPC first, then one transaction with its events.

The composition root group-commits new tickets: concurrent creates share a transaction and one insert
per table, through the same create pipeline as every other resource.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit import AuditLog
from services.common.crud import TenantTable
from services.common.db import Database
from services.common.events.outbox import Outbox
from services.common.fields import utcnow
from services.common.identity import Identity
from services.common.paging import UNSIGNED, Cursors
from services.common.resource import CreateWrites, Event, ResourceService, View
from services.tickets.consumers import CONFIRMATION_REQUESTED
from services.tickets.crm import CrmDirectory


class TicketService(ResourceService):
    """Tickets: references must be the tenant's; status and assignment changes are announced."""

    resource = "ticket"
    not_found = "Ticket not found."

    def __init__(
        self,
        *,
        db: Database,
        table: TenantTable,
        audit: AuditLog,
        outbox: Outbox,
        crm: CrmDirectory,
        writes: CreateWrites | None = None,
        cursors: Cursors = UNSIGNED,
        announce: View | None = None,
    ) -> None:
        super().__init__(
            db=db, table=table, audit=audit, outbox=outbox, writes=writes, cursors=cursors, announce=announce
        )
        self._crm = crm

    def initial_values(self, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        return {"status": "open", "priority": "normal", **fields}

    def new_row(self, caller: Identity, values: Mapping[str, Any]) -> dict[str, Any]:
        row = super().new_row(caller, values)
        if row["status"] == "resolved":
            row["resolved_at"] = row["created_at"]
        return row

    def created_events(self, caller: Identity, row: Row[Any], facts: dict[str, Any]) -> Sequence[Event]:
        payload = {"ticket_id": str(row.id), "title": row.title, "email": facts.get("customer_email")}
        return [(CONFIRMATION_REQUESTED, payload)]

    async def prepare(self, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        facts: dict[str, Any] = {}
        if fields.get("customer_id") is not None:
            facts["customer_email"] = await self._crm.contact_email(
                caller.tenant_id, fields["customer_id"], field="customer_id"
            )
        if fields.get("conversation_id") is not None:
            await self._crm.require_conversation(
                caller.tenant_id, fields["conversation_id"], field="conversation_id"
            )
        return facts

    async def before_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], fields: dict[str, Any]
    ) -> dict[str, Any]:
        values = {k: v for k, v in fields.items() if getattr(before, k) != v}
        if "status" in values:
            values["resolved_at"] = utcnow() if values["status"] == "resolved" else None
        return values

    async def after_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], row: Row[Any], facts: dict[str, Any]
    ) -> None:
        for field, topic in (("status", "ticket.status_changed"), ("assigned_to", "ticket.assigned")):
            if getattr(before, field) != getattr(row, field):
                await self.outbox.record(
                    conn,
                    tenant_id=caller.tenant_id,
                    topic=topic,
                    payload={
                        "ticket_id": str(row.id),
                        "from": getattr(before, field),
                        "to": getattr(row, field),
                    },
                )
