"""crm tables. Every key starts with tenant_id, so a row can only be reached through its tenant."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import cast

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.audit import audit_table
from services.common.db import NAMING_CONVENTION
from services.common.events.dead_letters import dead_letter_table
from services.common.events.inbox import inbox_table
from services.common.events.outbox import outbox_table
from services.common.idempotency import idempotency_table
from services.common.tables import TenantKey, Timestamps

# A lead's or contact's source when its caller names none.
DEFAULT_SOURCE = "public_api"
LIFECYCLE_STAGES = ("prospect", "active", "at_risk", "churned")
RENEWAL_STATUSES = ("upcoming", "at_risk", "renewed", "churned")


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Lead(TenantKey, Timestamps, Base):
    """A person who showed interest."""

    __tablename__ = "leads"

    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))
    company: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(100))
    source_bot_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    source_conversation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (
        Index(None, "tenant_id", "updated_at"),  # ?updated_since=
        Index(None, "tenant_id", "created_at", "id"),
        # CaptureLead finds a tenant's lead by email, case-insensitively.
        Index("ix_leads_tenant_id_email_lower", "tenant_id", text("lower(email)")),
    )


class Account(TenantKey, Timestamps, Base):
    """A customer organisation, with its lifecycle and renewal."""

    __tablename__ = "accounts"

    name: Mapped[str] = mapped_column(String(200))
    domain: Mapped[str | None] = mapped_column(String(255))
    industry: Mapped[str | None] = mapped_column(String(100))
    website: Mapped[str | None] = mapped_column(String(2048))
    phone: Mapped[str | None] = mapped_column(String(50))
    address: Mapped[str | None] = mapped_column(String(1000))
    notes: Mapped[str | None] = mapped_column(Text)
    lifecycle_stage: Mapped[str] = mapped_column(String(20))
    health_score: Mapped[int | None] = mapped_column(Integer)
    renewal_date: Mapped[dt.date | None] = mapped_column(Date)
    renewal_status: Mapped[str | None] = mapped_column(String(20))
    mrr_cents: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index(None, "tenant_id", "updated_at"),  # ?updated_since=
        Index(None, "tenant_id", "created_at", "id"),
        Index(None, "tenant_id", "lifecycle_stage", "created_at"),
        CheckConstraint(_one_of("lifecycle_stage", LIFECYCLE_STAGES), name="lifecycle_stage"),
        CheckConstraint(_one_of("renewal_status", RENEWAL_STATUSES), name="renewal_status"),
        CheckConstraint("health_score BETWEEN 0 AND 100", name="health_score"),
    )


class Contact(TenantKey, Timestamps, Base):
    """A customer person; always attached to an account of the same tenant."""

    __tablename__ = "contacts"

    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))
    company: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(100))
    source_bot_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    source_conversation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (
        Index(None, "tenant_id", "updated_at"),  # ?updated_since=
        Index(None, "tenant_id", "created_at", "id"),
        Index(None, "tenant_id", "account_id", "created_at"),
        # The account must be the same tenant's: the key includes tenant_id.
        ForeignKeyConstraint(["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.id"]),
        CheckConstraint("account_id IS NOT NULL", name="customers_contact_requires_account"),
        # Lets conversations reference a contact by id alone, so deleting it can SET NULL just that column.
        UniqueConstraint("id"),
    )


class LifecycleEvent(TenantKey, Base):
    """A lifecycle transition of an account (or lead); deleted with its subject."""

    __tablename__ = "lifecycle_events"

    account_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    lead_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    from_stage: Mapped[str | None] = mapped_column(String(20))
    to_stage: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(None, "tenant_id", "account_id", "created_at"),
        Index(None, "tenant_id", "lead_id", "created_at"),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.id"], ondelete="CASCADE"
        ),
        ForeignKeyConstraint(["tenant_id", "lead_id"], ["leads.tenant_id", "leads.id"], ondelete="CASCADE"),
    )


CONVERSATION_STATUSES = ("open", "assigned", "waiting", "resolved", "escalated")
CHANNELS = ("telegram", "whatsapp", "voice", "sms", "email", "web_chat")
MESSAGE_ROLES = ("visitor", "agent", "bot", "system")


class Conversation(TenantKey, Base):
    """A conversation with a customer; tags and stamps are set by the bot pipeline and by closing."""

    __tablename__ = "conversations"

    status: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(20))
    channel_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    customer_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    assigned_agent_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    subject: Mapped[str | None] = mapped_column(String(300))
    intent: Mapped[str | None] = mapped_column(String(50))
    sentiment: Mapped[str | None] = mapped_column(String(20))
    language: Mapped[str | None] = mapped_column(String(20))
    summary: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    resolution_seconds: Mapped[int | None] = mapped_column(Integer)
    handoff_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    handoff_reason: Mapped[str | None] = mapped_column(String(200))
    csat_requested_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_message_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    message_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    instance_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

    __table_args__ = (
        Index(None, "tenant_id", "updated_at", "id"),
        Index(None, "tenant_id", "instance_id"),
        Index(None, "tenant_id", "status", "updated_at"),
        Index(None, "tenant_id", "customer_id"),
        # By id alone, so deleting a contact nulls only this column and keeps the conversation.
        ForeignKeyConstraint(["customer_id"], ["contacts.id"], ondelete="SET NULL"),
        CheckConstraint(_one_of("status", CONVERSATION_STATUSES), name="status"),
    )


class Message(TenantKey, Timestamps, Base):
    """One message of a conversation; deleted with it."""

    __tablename__ = "messages"

    conversation_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    role: Mapped[str] = mapped_column(String(20))
    content: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index(None, "tenant_id", "conversation_id", "created_at"),
        ForeignKeyConstraint(
            ["tenant_id", "conversation_id"],
            ["conversations.tenant_id", "conversations.id"],
            ondelete="CASCADE",
        ),
    )


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


leads = _table(Lead)
accounts = _table(Account)
contacts = _table(Contact)
lifecycle_events = _table(LifecycleEvent)
conversations = _table(Conversation)
messages = _table(Message)
audit_log = audit_table(Base.metadata)
outbox = outbox_table(Base.metadata)
processed_events = inbox_table(Base.metadata)
dead_letters = dead_letter_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)
