"""The transactional outbox: side effects recorded in the same transaction as the write that causes them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, DateTime, Index, MetaData, String, Table, Text, Uuid, insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.fields import utcnow


def outbox_table(metadata: MetaData) -> Table:
    """The outbox table in a service's own metadata."""
    return Table(
        "outbox",
        metadata,
        Column("tenant_id", Uuid, primary_key=True),
        Column("id", Uuid, primary_key=True),
        Column("topic", String(100), nullable=False),
        Column("payload", Text, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("dispatched_at", DateTime(timezone=True)),
        # The dispatcher scans pending events across tenants, so this index cannot lead with tenant_id.
        Index(None, "dispatched_at", "created_at"),
    )


class Outbox:
    """Records events inside the caller's transaction; a dispatcher delivers them later, at least once."""

    def __init__(self, table: Table, *, on_record: Callable[[], None] = lambda: None) -> None:
        self.table = table
        self._insert = insert(table)  # built once; each record only binds values
        self._on_record = on_record

    def row(self, *, tenant_id: uuid.UUID, topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The outbox row of one event, for a caller that inserts it with others."""
        self._on_record()
        return {
            "tenant_id": tenant_id,
            "id": uuid.uuid4(),
            "topic": topic,
            "payload": json.dumps(payload, default=str),
            "created_at": utcnow(),
        }

    async def record(
        self, conn: AsyncConnection, *, tenant_id: uuid.UUID, topic: str, payload: dict[str, Any]
    ) -> None:
        await conn.execute(self._insert, self.row(tenant_id=tenant_id, topic=topic, payload=payload))
