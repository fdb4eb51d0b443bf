"""Tenant and key queries. Never commits: the caller owns the transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from edge.gatekeeper.models import api_keys, tenants


async def insert_tenant(conn: AsyncConnection, *, values: dict[str, Any]) -> Row[Any]:
    return (await conn.execute(insert(tenants).values(**values).returning(*tenants.c))).one()


async def get_tenant(conn: AsyncConnection, *, tenant_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(tenants).where(tenants.c.id == tenant_id))).first()


async def list_tenants(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(tenants).order_by(tenants.c.created_at, tenants.c.id))).all()


async def insert_key(conn: AsyncConnection, *, values: dict[str, Any]) -> Row[Any]:
    return (await conn.execute(insert(api_keys).values(**values).returning(*api_keys.c))).one()


async def find_key_by_hash(conn: AsyncConnection, *, key_hash: str) -> Row[Any] | None:
    return (await conn.execute(select(api_keys).where(api_keys.c.key_hash == key_hash))).first()


async def list_keys(conn: AsyncConnection, *, tenant_id: uuid.UUID | None) -> Sequence[Row[Any]]:
    query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    if tenant_id is not None:
        query = query.where(api_keys.c.tenant_id == tenant_id)
    return (await conn.execute(query)).all()


async def get_key(conn: AsyncConnection, *, key_id: uuid.UUID) -> Row[Any] | None:
    return (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()


async def live_key_ids(
    conn: AsyncConnection, *, tenant_id: uuid.UUID, key_ids: Sequence[uuid.UUID]
) -> Sequence[uuid.UUID]:
    query = select(api_keys.c.id).where(
        api_keys.c.tenant_id == tenant_id, api_keys.c.id.in_(key_ids), api_keys.c.revoked_at.is_(None)
    )
    return (await conn.execute(query)).scalars().all()


async def update_key(conn: AsyncConnection, *, key_id: uuid.UUID, values: dict[str, Any]) -> Row[Any] | None:
    query = update(api_keys).where(api_keys.c.id == key_id).values(**values).returning(*api_keys.c)
    return (await conn.execute(query)).first()


async def count_live_keys(conn: AsyncConnection, *, tenant_id: uuid.UUID, kind: str, now: dt.datetime) -> int:
    """How many of the tenant's keys of `kind` are neither revoked nor expired."""
    c = api_keys.c
    query = select(func.count()).where(
        c.tenant_id == tenant_id,
        c.kind == kind,
        c.revoked_at.is_(None),
        or_(c.expires_at.is_(None), c.expires_at > now),
    )
    return int((await conn.execute(query)).scalar_one())


async def revoke_instance_keys(
    conn: AsyncConnection, *, tenant_id: uuid.UUID, instance_id: uuid.UUID, at: dt.datetime
) -> int:
    query = (
        update(api_keys)
        .where(
            api_keys.c.tenant_id == tenant_id,
            api_keys.c.instance_id == instance_id,
            api_keys.c.revoked_at.is_(None),
        )
        .values(revoked_at=at)
    )
    return (await conn.execute(query)).rowcount
