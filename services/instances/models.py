"""instances tables: instances and their channels (deleted with their instance); the tenant's webhook
endpoints, the events of every service, and their deliveries."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
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
DELIVERY_STATUSES = ("pending", "succeeded", "failed")
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


class WebhookEndpoint(TenantKey, Timestamps, Base):
    """Where a tenant wants its events POSTed, and the secrets they are signed with.

    The secrets are kept as they are: signing needs them (a digest could only check a signature).
    """

    __tablename__ = "webhook_endpoints"

    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    signing_secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The last time a delivery got a 2xx answer: an endpoint failing since long before is disabled.
    last_success_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index(None, "tenant_id", "created_at", "id"),)


class Event(Base):
    """An event of any service, numbered per tenant in the order it was recorded (the feed's order)."""

    __tablename__ = "events"

    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    seq: Mapped[int] = mapped_column(BigInteger)
    id: Mapped[uuid.UUID] = mapped_column(Uuid)
    type: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    data: Mapped[str] = mapped_column(Text)  # the JSON object the event carries
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        PrimaryKeyConstraint("tenant_id", "seq"),
        UniqueConstraint("tenant_id", "id"),  # an event sent twice is recorded once
        Index(None, "recorded_at"),  # retention
    )


class EventCounter(Base):
    """The last number given to a tenant's event; its row lock orders the tenant's recordings."""

    __tablename__ = "event_counters"

    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)


class WebhookDelivery(TenantKey, Timestamps, Base):
    """One event sent to one endpoint: its attempts so far and when it is tried next."""

    __tablename__ = "webhook_deliveries"

    endpoint_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_seq: Mapped[int] = mapped_column(BigInteger)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer)
    # Null once it succeeded or failed; while a sender holds it, the end of its lease.
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    response_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))

    __table_args__ = (
        ForeignKeyConstraint(
            ["tenant_id", "endpoint_id"],
            ["webhook_endpoints.tenant_id", "webhook_endpoints.id"],
            ondelete="CASCADE",
        ),
        Index(None, "tenant_id", "endpoint_id", "created_at", "id"),
        # The senders scan due deliveries across tenants, so this index cannot lead with tenant_id.
        Index(None, "next_attempt_at"),
        Index(None, "created_at"),  # retention
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
    )


instances = cast(Table, Instance.__table__)
channels = cast(Table, Channel.__table__)
webhook_endpoints = cast(Table, WebhookEndpoint.__table__)
events = cast(Table, Event.__table__)
event_counters = cast(Table, EventCounter.__table__)
webhook_deliveries = cast(Table, WebhookDelivery.__table__)
audit_log = audit_table(Base.metadata)
outbox = outbox_table(Base.metadata)
processed_events = inbox_table(Base.metadata)
dead_letters = dead_letter_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)
