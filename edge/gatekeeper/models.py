"""Gatekeeper tables: tenants, their API keys (stored as SHA-256 hashes, never in clear) and members."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import NAMING_CONVENTION
from services.common.idempotency import idempotency_table


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Tenant(Base):
    """A workspace."""

    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ApiKey(Base):
    """A key: hmcp_ (Support API), hc_live_ (HydraCore) or hwt_ (one instance's widget)."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(24))
    # The secret is looked up before its tenant is known, so this index cannot lead with tenant_id.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(2000))
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer)
    instance_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index(None, "tenant_id", "created_at"), Index(None, "tenant_id", "instance_id"))


class Membership(Base):
    """A user (signed in by ID token) in a tenant, with a role; the most recently selected is current."""

    __tablename__ = "memberships"

    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("tenants.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    selected_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (CheckConstraint("role IN ('admin', 'member', 'viewer')", name="role"),)


class ToolConfirmation(Base):
    """A write an MCP client previewed: what it would do, for which key, until when; applied once."""

    __tablename__ = "tool_confirmations"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(100))
    arguments: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[str | None] = mapped_column(String(64))  # the row's updated_at when previewed
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ToolCallRecord(Base):
    """One MCP tool call: who, which tool and scope, how long, how it ended; never its arguments,
    answer or error text."""

    __tablename__ = "tool_calls"

    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    key_id: Mapped[str] = mapped_column(String(64))
    surface: Mapped[str] = mapped_column(String(20))
    tool: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(100))
    latency_ms: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(10))
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)

    __table_args__ = (Index(None, "tenant_id", "surface", "at", "id"),)


tenants = cast(Table, Tenant.__table__)
api_keys = cast(Table, ApiKey.__table__)
memberships = cast(Table, Membership.__table__)
tool_confirmations = cast(Table, ToolConfirmation.__table__)
tool_calls = cast(Table, ToolCallRecord.__table__)
idempotency_keys = idempotency_table(Base.metadata)
