"""Lead queries (SQLAlchemy Core: the hot path). Never commits: the service owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.crm.models import leads

# The hot reads are built once; only their parameters change per request.
_LIST_LEADS = (
    select(leads)
    .where(leads.c.tenant_id == bindparam("tenant_id"))
    .order_by(leads.c.created_at.desc(), leads.c.id.desc())
    .limit(bindparam("limit"))
)
_GET_LEAD = select(leads).where(
    leads.c.tenant_id == bindparam("tenant_id"), leads.c.id == bindparam("lead_id")
)


async def list_leads(conn: AsyncConnection, *, tenant_id: uuid.UUID, limit: int) -> Sequence[Row[Any]]:
    """The tenant's newest leads."""
    return (await conn.execute(_LIST_LEADS, {"tenant_id": tenant_id, "limit": limit})).all()


async def get_lead(conn: AsyncConnection, *, tenant_id: uuid.UUID, lead_id: uuid.UUID) -> Row[Any] | None:
    """One lead of the tenant, or None."""
    return (await conn.execute(_GET_LEAD, {"tenant_id": tenant_id, "lead_id": lead_id})).first()


async def insert_lead(conn: AsyncConnection, *, values: dict[str, Any]) -> Row[Any]:
    """Inserts a lead and returns the stored row."""
    return (await conn.execute(insert(leads).values(**values).returning(*leads.c))).one()


async def update_lead(
    conn: AsyncConnection, *, tenant_id: uuid.UUID, lead_id: uuid.UUID, values: dict[str, Any]
) -> Row[Any] | None:
    """Updates a lead of the tenant; returns the stored row, or None if there is no such lead."""
    query = (
        update(leads)
        .where(leads.c.tenant_id == tenant_id, leads.c.id == lead_id)
        .values(**values)
        .returning(*leads.c)
    )
    return (await conn.execute(query)).first()


async def delete_lead(conn: AsyncConnection, *, tenant_id: uuid.UUID, lead_id: uuid.UUID) -> bool:
    """Deletes a lead of the tenant; False if there was none."""
    result = await conn.execute(delete(leads).where(leads.c.tenant_id == tenant_id, leads.c.id == lead_id))
    return result.rowcount > 0
