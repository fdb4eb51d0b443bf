"""crm tables. Every key starts with tenant_id, so a row can only be reached through its tenant."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import cast

from sqlalchemy import DateTime, Index, MetaData, String, Table, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.common.db import NAMING_CONVENTION


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Lead(Base):
    """A person who showed interest."""

    __tablename__ = "leads"

    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))
    company: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(100))
    source_bot_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    source_conversation_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index(None, "tenant_id", "created_at", "id"),)


leads = cast(Table, Lead.__table__)
