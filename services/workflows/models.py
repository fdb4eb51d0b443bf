"""workflows tables: users, their workflows with versions, their libraries and their deployments."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import NAMING_CONVENTION
from services.common.idempotency import idempotency_table
from services.common.tables import Timestamps

VISIBILITIES = ("public", "private")
SOURCE_TYPES = ("owned", "subscribed", "forked")
ADAPTERS = ("claude", "cursor", "codex")
DEPLOYMENT_STATUSES = ("active", "inactive")


def ordered_adapters(names: Any) -> list[str]:
    """The adapters named, each once, in the platform's order."""
    chosen = set(names)
    return [adapter for adapter in ADAPTERS if adapter in chosen]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Timestamps, Base):
    """A person signed in by ID token: the issuer's subject, their email and their plan."""

    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    plan: Mapped[str] = mapped_column(String(20))

    __table_args__ = (CheckConstraint("plan IN ('free', 'pro', 'team', 'enterprise')", name="plan"),)


class Workflow(Timestamps, Base):
    """A workflow: its current manifest and version, and counts of its use kept with every change."""

    __tablename__ = "workflows"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    visibility: Mapped[str] = mapped_column(String(10))
    category: Mapped[str] = mapped_column(String(50))
    tags: Mapped[list[str]] = mapped_column(JSON)
    current_version: Mapped[str] = mapped_column(String(32))
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    forked_from_id: Mapped[str | None] = mapped_column(String(40))
    forked_from_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    forked_from_version: Mapped[str | None] = mapped_column(String(32))
    featured_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    forks: Mapped[int] = mapped_column(Integer)
    subscribers: Mapped[int] = mapped_column(Integer)
    rating_total: Mapped[int] = mapped_column(Integer)
    rating_count: Mapped[int] = mapped_column(Integer)
    # Name, description, category and tags as one text: what marketplace search matches.
    search_text: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        Index(None, "user_id", "created_at", "id"),
        Index(None, "visibility", "created_at", "id"),
        Index(None, "visibility", "category", "created_at", "id"),
        Index(None, "visibility", "subscribers", "forks", "id"),
        Index(None, "visibility", "featured_at", "id"),
        CheckConstraint("visibility IN ('public', 'private')", name="visibility"),
    )


class WorkflowVersion(Base):
    """Each manifest a workflow has had, by version."""

    __tablename__ = "workflow_versions"

    workflow_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class LibraryEntry(Base):
    """A workflow in a user's library: owned, subscribed or forked; pinned to a version or following."""

    __tablename__ = "library_entries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    workflow_id: Mapped[str] = mapped_column(String(40), ForeignKey("workflows.id", ondelete="CASCADE"))
    source_type: Mapped[str] = mapped_column(String(12))
    source_user_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    is_active: Mapped[bool] = mapped_column(Boolean)
    enabled_adapters: Mapped[list[str]] = mapped_column(JSON)
    auto_update: Mapped[bool] = mapped_column(Boolean)
    pinned_version: Mapped[str | None] = mapped_column(String(32))
    rating: Mapped[int | None] = mapped_column(SmallInteger)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        UniqueConstraint("user_id", "workflow_id"),
        Index(None, "user_id", "added_at", "id"),
        Index(None, "workflow_id"),
        CheckConstraint("source_type IN ('owned', 'subscribed', 'forked')", name="source_type"),
        CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating"),
    )


class Deployment(Timestamps, Base):
    """Workflows of one user served together at one MCP endpoint."""

    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(Text)
    enabled_adapters: Mapped[list[str]] = mapped_column(JSON)
    allow_anonymous: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(10))

    __table_args__ = (
        Index(None, "user_id", "created_at", "id"),
        CheckConstraint("status IN ('active', 'inactive')", name="status"),
    )


class DeploymentWorkflow(Base):
    """A workflow a deployment serves (its prompt), in order."""

    __tablename__ = "deployment_workflows"

    deployment_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("deployments.id", ondelete="CASCADE"), primary_key=True
    )
    workflow_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index(None, "workflow_id"),)


class DeploymentKey(Base):
    """A key an owner minted for their deployment's endpoint, kept only as a digest."""

    __tablename__ = "deployment_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(40), ForeignKey("deployments.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index(None, "deployment_id"),)


class DeploymentConnection(Base):
    """One MCP session opened at a deployment's endpoint: kept after the deployment goes, since it
    counts against its owner's monthly allowance."""

    __tablename__ = "deployment_connections"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    deployment_id: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("users.id", ondelete="CASCADE"))
    adapter: Mapped[str] = mapped_column(String(10))
    connected_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(None, "deployment_id", "connected_at"),
        Index(None, "user_id", "connected_at"),
    )


class BillingAccount(Base):
    """A user's Stripe customer and subscription, as Stripe's events last described it."""

    __tablename__ = "billing_accounts"

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    subscription_id: Mapped[str | None] = mapped_column(String(255))
    plan: Mapped[str | None] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(30))
    current_period_start: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    current_period_end: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean)
    last_event_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))  # when Stripe made it
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class StripeEvent(Base):
    """A Stripe event already applied: a redelivery changes nothing."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


users = cast(Table, User.__table__)
workflows = cast(Table, Workflow.__table__)
workflow_versions = cast(Table, WorkflowVersion.__table__)
library_entries = cast(Table, LibraryEntry.__table__)
deployments = cast(Table, Deployment.__table__)
deployment_workflows = cast(Table, DeploymentWorkflow.__table__)
deployment_keys = cast(Table, DeploymentKey.__table__)
deployment_connections = cast(Table, DeploymentConnection.__table__)
billing_accounts = cast(Table, BillingAccount.__table__)
stripe_events = cast(Table, StripeEvent.__table__)
idempotency_keys = idempotency_table(Base.metadata)
