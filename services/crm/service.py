"""Lead use cases; each owns its transaction and raises domain errors."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from sqlalchemy import Row

from services.common.db import Database
from services.common.errors import FieldError, NotFound, ValidationError
from services.common.fields import parse_limit, utcnow
from services.common.identity import Identity
from services.crm import repository

DEFAULT_SOURCE = "public_api"
LEAD_NOT_FOUND = "Lead not found."


class LeadService:
    """Creates, reads, updates and deletes a tenant's leads."""

    def __init__(self, *, db: Database, repo: ModuleType | Any = repository) -> None:
        self._db = db
        self._repo = repo

    async def list(self, caller: Identity, *, limit: int | None) -> Sequence[Row[Any]]:
        """The caller's newest leads, at most `limit` (1..100, default 25)."""
        count = parse_limit(limit)
        async with self._db.read() as conn:
            return await self._repo.list_leads(conn, tenant_id=caller.tenant_id, limit=count)

    async def get(self, caller: Identity, lead_id: uuid.UUID) -> Row[Any]:
        """One lead of the caller's tenant."""
        async with self._db.read() as conn:
            row = await self._repo.get_lead(conn, tenant_id=caller.tenant_id, lead_id=lead_id)
        if row is None:
            raise NotFound(LEAD_NOT_FOUND)
        return row

    async def create(self, caller: Identity, fields: dict[str, Any]) -> Row[Any]:
        """Creates a lead from validated fields, at least one of them non-null."""
        if not any(value is not None for value in fields.values()):
            raise ValidationError(
                FieldError(
                    ("body",), "At least one of email, name, phone, company, source is required", "missing"
                ),
                message="At least one of email, name, phone, company, source is required.",
            )
        now = utcnow()
        values = {
            "tenant_id": caller.tenant_id,
            "id": uuid.uuid4(),
            "source": DEFAULT_SOURCE,
            **fields,
            "created_at": now,
            "updated_at": now,
        }
        async with self._db.transaction() as conn:
            return await self._repo.insert_lead(conn, values=values)

    async def update(self, caller: Identity, lead_id: uuid.UUID, fields: dict[str, Any]) -> Row[Any]:
        """Applies any subset of validated fields; an empty subset changes nothing."""
        async with self._db.transaction() as conn:
            if not fields:
                row = await self._repo.get_lead(conn, tenant_id=caller.tenant_id, lead_id=lead_id)
            else:
                row = await self._repo.update_lead(
                    conn,
                    tenant_id=caller.tenant_id,
                    lead_id=lead_id,
                    values={**fields, "updated_at": utcnow()},
                )
        if row is None:
            raise NotFound(LEAD_NOT_FOUND)
        return row

    async def delete(self, caller: Identity, lead_id: uuid.UUID) -> None:
        """Deletes a lead of the caller's tenant."""
        async with self._db.transaction() as conn:
            deleted = await self._repo.delete_lead(conn, tenant_id=caller.tenant_id, lead_id=lead_id)
        if not deleted:
            raise NotFound(LEAD_NOT_FOUND)
