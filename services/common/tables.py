"""Declarative pieces every service's tables share: the tenant key and the row timestamps."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import DateTime, Uuid
from sqlalchemy.orm import Mapped, mapped_column


class TenantKey:
    """The key every tenant table starts with, (tenant_id, id): a row is only reached through its tenant."""

    # sort_order keeps the key first in every table, whatever the subclass declares.
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, sort_order=-2)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, sort_order=-1)


class Timestamps:
    """When a row was created and last changed, the last columns of its table."""

    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), sort_order=1)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), sort_order=2)
