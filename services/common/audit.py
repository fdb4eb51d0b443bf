"""The audit log: one row per write (key id, tenant, resource, action, time) — never the key itself."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table, Uuid, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.fields import utcnow
from services.common.identity import Identity


def audit_table(metadata: MetaData) -> Table:
    """The audit_log table in a service's own metadata."""
    return Table(
        "audit_log",
        metadata,
        Column("tenant_id", Uuid, primary_key=True),
        Column("id", Uuid, primary_key=True),
        Column("key_id", String(64), nullable=False),
        Column("resource", String(50), nullable=False),
        Column("resource_id", Uuid, nullable=False),
        Column("action", String(20), nullable=False),
        Column("at", DateTime(timezone=True), nullable=False),
        Index(None, "tenant_id", "at"),
    )


class AuditLog:
    """Writes audit rows inside the caller's transaction."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._insert = insert(table)  # built once; each record only binds values

    def row(self, caller: Identity, *, resource: str, resource_id: uuid.UUID, action: str) -> dict[str, Any]:
        """The audit row of one write, for a caller that inserts it with others."""
        return {
            "tenant_id": caller.tenant_id,
            "id": uuid.uuid4(),
            "key_id": caller.key_id or "-",
            "resource": resource,
            "resource_id": resource_id,
            "action": action,
            "at": utcnow(),
        }

    async def record(
        self, conn: AsyncConnection, caller: Identity, *, resource: str, resource_id: uuid.UUID, action: str
    ) -> None:
        await conn.execute(
            self._insert, self.row(caller, resource=resource, resource_id=resource_id, action=action)
        )
