"""crm's tables as tenant-scoped query sets. Never commits: the service owns the transaction."""

from __future__ import annotations

import uuid

from sqlalchemy import insert
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
