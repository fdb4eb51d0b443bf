"""Ticket use cases: crm references checked over gRPC first, then one transaction with its events.

New tickets are group-committed: concurrent creates share a transaction and one insert per table.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit import AuditLog
from services.common.batching import GroupCommitWriter, RowRejected, RowSet
from services.common.crud import TenantTable
from services.common.db import Database
from services.common.errors import Conflict
from services.common.events.outbox import Outbox
from services.common.fields import utcnow
from services.common.identity import Identity
from services.common.resource import WRITE_CONFLICT, ResourceService
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
        writer: GroupCommitWriter[RowSet],
    ) -> None:
        super().__init__(db=db, table=table, audit=audit)
        self._outbox = outbox
        self._crm = crm
        self._writer = writer

    async def create(self, caller: Identity, fields: dict[str, Any]) -> Row[Any]:
        """Opens a ticket: its row, its ticket.created event and its audit entry commit together."""
        facts = await self.prepare(caller, fields)
        values = self.table.complete(self.new_row(caller, {"status": "open", "priority": "normal", **fields}))
        if values["status"] == "resolved":
            values["resolved_at"] = values["created_at"]
        rows = RowSet()
        rows.add(self.table.table, values)
        rows.add(
            self._outbox.table,
            self._outbox.row(
                tenant_id=caller.tenant_id,
                topic="ticket.created",
                payload={
                    "ticket_id": str(values["id"]),
                    "title": values["title"],
                    "email": facts.get("customer_email"),
                },
            ),
        )
        rows.add(
            self._audit.table,
            self._audit.row(caller, resource=self.resource, resource_id=values["id"], action="create"),
        )
        try:
            await self._writer.write(rows)
        except RowRejected:
            raise Conflict(WRITE_CONFLICT) from None
        return self.table.written(values)

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
                await self._outbox.record(
                    conn,
                    tenant_id=caller.tenant_id,
                    topic=topic,
                    payload={
                        "ticket_id": str(row.id),
                        "from": getattr(before, field),
                        "to": getattr(row, field),
                    },
                )
