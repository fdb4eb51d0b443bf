"""instances tables: instances and their channels (deleted with their instance)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    MetaData,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.audit import audit_table
from services.common.db import NAMING_CONVENTION
from services.common.events.dead_letters import dead_letter_table
from services.common.events.inbox import inbox_table
from services.common.events.outbox import outbox_table
from services.common.idempotency import idempotency_table
from services.common.tables import TenantKey, Timestamps

INSTANCE_STATUSES = ("active", "paused")
DEFAULT_MODEL: dict[str, Any] = {
    "backend": "knowledge",
    "model": None,
    "base_url": None,
    "temperature": None,
    "max_tokens": None,
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Instance(TenantKey, Timestamps, Base):
    """An AI support agent of a tenant, with the knowledge it answers from."""

    __tablename__ = "instances"

    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    model: Mapped[dict[str, Any]] = mapped_column(JSON)
    knowledge: Mapped[list[dict[str, str]]] = mapped_column(JSON)

    __table_args__ = (
        Index(None, "tenant_id", "updated_at"),  # ?updated_since=
        Index(None, "tenant_id", "created_at", "id"),
        CheckConstraint("status IN ('active', 'paused')", name="status"),
    )


class Channel(TenantKey, Timestamps, Base):
    """Where an instance meets customers; the webhook secret is kept only as a salted digest."""

    __tablename__ = "channels"

    instance_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    channel_type: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str] = mapped_column(String(50))
    external_identifier: Mapped[str] = mapped_column(String(255))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    connection_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    credential_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    enabled: Mapped[bool] = mapped_column(Boolean)
    webhook_secret_digest: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))
    error_message: Mapped[str | None] = mapped_column(Text)
    last_event_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(None, "tenant_id", "updated_at"),  # ?updated_since=
        ForeignKeyConstraint(
            ["tenant_id", "instance_id"], ["instances.tenant_id", "instances.id"], ondelete="CASCADE"
        ),
        Index(None, "tenant_id", "instance_id", "created_at"),
        CheckConstraint(
            "channel_type IN ('telegram', 'whatsapp', 'voice', 'sms', 'email', 'web_chat')",
            name="channel_type",
        ),
        CheckConstraint("status IN ('pending', 'active', 'error', 'disabled')", name="status"),
    )


instances = cast(Table, Instance.__table__)
channels = cast(Table, Channel.__table__)
audit_log = audit_table(Base.metadata)
outbox = outbox_table(Base.metadata)
processed_events = inbox_table(Base.metadata)
dead_letters = dead_letter_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)
