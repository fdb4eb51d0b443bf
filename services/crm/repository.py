"""crm's tables as tenant-scoped query sets. Never commits: the service owns the transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.crud import TenantTable
from services.common.fields import utcnow
from services.crm import models

leads = TenantTable(models.leads)
accounts = TenantTable(models.accounts)
contacts = TenantTable(models.contacts)


async def insert_lifecycle_event(
    conn: AsyncConnection,
    *,
    tenant_id: uuid.UUID,
    account_id: uuid.UUID,
    from_stage: str | None,
    to_stage: str,
) -> None:
    """Records one lifecycle transition of an account."""
    await conn.execute(
        insert(models.lifecycle_events).values(
            tenant_id=tenant_id,
            id=uuid.uuid4(),
            account_id=account_id,
            from_stage=from_stage,
            to_stage=to_stage,
            created_at=utcnow(),
        )
    )


conversations = TenantTable(
    models.conversations,
    order_by=[models.conversations.c.updated_at.desc(), models.conversations.c.id.desc()],
)
messages = TenantTable(models.messages, order_by=[models.messages.c.created_at, models.messages.c.id])


async def find_lead_by_email(conn: AsyncConnection, *, tenant_id: uuid.UUID, email: str) -> Row[Any] | None:
    """The tenant's newest lead with this email, compared case-insensitively."""
    c = models.leads.c
    query = (
        select(models.leads)
        .where(c.tenant_id == tenant_id, func.lower(c.email) == email.lower())
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(1)
    )
    return (await conn.execute(query)).first()


async def latest_messages(
    conn: AsyncConnection, *, tenant_id: uuid.UUID, conversation_id: uuid.UUID, limit: int
) -> Sequence[Row[Any]]:
    """A conversation's latest messages, newest first."""
    c = models.messages.c
    query = (
        select(models.messages)
        .where(c.tenant_id == tenant_id, c.conversation_id == conversation_id)
        .order_by(c.created_at.desc(), c.id.desc())
        .limit(limit)
    )
    return (await conn.execute(query)).all()
