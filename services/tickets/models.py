"""tickets tables. Contacts and conversations live in crm: referenced by id, checked over gRPC."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import cast

from sqlalchemy import CheckConstraint, DateTime, Index, MetaData, String, Table, Text, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.audit import audit_table
from services.common.db import NAMING_CONVENTION
from services.common.events.dead_letters import dead_letter_table
from services.common.events.inbox import inbox_table
from services.common.events.outbox import outbox_table
from services.common.idempotency import idempotency_table
from services.common.tables import TenantKey, Timestamps

STATUSES = ("open", "in_progress", "resolved", "closed")
PRIORITIES = ("low", "normal", "high", "urgent")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Ticket(TenantKey, Timestamps, Base):
    """A unit of support work."""

    __tablename__ = "tickets"

    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    priority: Mapped[str] = mapped_column(String(20))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    assigned_to: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(None, "tenant_id", "updated_at"),  # ?updated_since=
        Index(None, "tenant_id", "created_at", "id"),
        Index(None, "tenant_id", "status", "created_at"),
        Index(None, "tenant_id", "customer_id"),
        Index(None, "tenant_id", "conversation_id"),
        CheckConstraint("status IN ('open', 'in_progress', 'resolved', 'closed')", name="status"),
        CheckConstraint("priority IN ('low', 'normal', 'high', 'urgent')", name="priority"),
    )


tickets = cast(Table, Ticket.__table__)
audit_log = audit_table(Base.metadata)
outbox = outbox_table(Base.metadata)
processed_events = inbox_table(Base.metadata)
dead_letters = dead_letter_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)
