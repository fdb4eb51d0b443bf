"""public tables: published sites, their page views and form submissions (deleted with their site)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, cast

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Site(TenantKey, Timestamps, Base):
    """A published website; its id (config id) and tracking token are what its pages send."""

    __tablename__ = "sites"

    name: Mapped[str] = mapped_column(String(200))
    domain: Mapped[str | None] = mapped_column(String(253))
    tracking_token: Mapped[uuid.UUID] = mapped_column(Uuid)

    __table_args__ = (
        Index(None, "tenant_id", "updated_at"),  # ?updated_since=
        Index(None, "tenant_id", "created_at", "id"),
        # Public requests name a site without a tenant: both ids are unique on their own.
        UniqueConstraint("id"),
        UniqueConstraint("tracking_token"),
    )


class PageView(TenantKey, Base):
    """One page view reported by a site's tracking script."""

    __tablename__ = "page_views"

    site_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    page_path: Mapped[str] = mapped_column(String(2048))
    device_type: Mapped[str | None] = mapped_column(String(50))
    referrer: Mapped[str | None] = mapped_column(String(2048))
    screen_width: Mapped[int | None] = mapped_column(Integer)
    session_id: Mapped[str | None] = mapped_column(String(200))
    viewed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(None, "tenant_id", "site_id", "viewed_at"),
        ForeignKeyConstraint(["tenant_id", "site_id"], ["sites.tenant_id", "sites.id"], ondelete="CASCADE"),
    )


class FormSubmission(TenantKey, Base):
    """A form submitted on a site; lead_id is filled once crm has recorded the lead."""

    __tablename__ = "form_submissions"

    site_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    form_data: Mapped[dict[str, Any]] = mapped_column(JSON)
    email: Mapped[str | None] = mapped_column(String(320))
    page_slug: Mapped[str | None] = mapped_column(String(200))
    lead_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index(None, "tenant_id", "site_id", "created_at", "id"),
        ForeignKeyConstraint(["tenant_id", "site_id"], ["sites.tenant_id", "sites.id"], ondelete="CASCADE"),
    )


sites = cast(Table, Site.__table__)
page_views = cast(Table, PageView.__table__)
form_submissions = cast(Table, FormSubmission.__table__)
audit_log = audit_table(Base.metadata)
outbox = outbox_table(Base.metadata)
processed_events = inbox_table(Base.metadata)
dead_letters = dead_letter_table(Base.metadata)
idempotency_keys = idempotency_table(Base.metadata)
