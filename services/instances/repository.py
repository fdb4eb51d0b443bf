"""instances' tables as tenant-scoped query sets, and the event hub's statements. Never commits: the
service owns the transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, and_, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.crud import TenantTable
from services.common.fields import utcnow
from services.instances import models

instances = TenantTable(models.instances)
channels = TenantTable(
    models.channels, order_by=[models.channels.c.created_at.asc(), models.channels.c.id.asc()]
)
webhook_endpoints = TenantTable(models.webhook_endpoints)
webhook_deliveries = TenantTable(models.webhook_deliveries)

_events = models.events.c
_counters = models.event_counters
_deliveries = models.webhook_deliveries
_endpoints = models.webhook_endpoints


async def reserve_event_numbers(conn: AsyncConnection, tenant_id: uuid.UUID, count: int) -> int:
    """Reserves `count` numbers for the tenant's next events; returns the first. The counter's row stays
    locked until the transaction ends, so the tenant's events commit in the order of their numbers."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(_counters).values(tenant_id=tenant_id, last_seq=count)
    statement = statement.on_conflict_do_update(
        index_elements=[_counters.c.tenant_id], set_={"last_seq": _counters.c.last_seq + count}
    ).returning(_counters.c.last_seq)
    last = (await conn.execute(statement)).scalar_one()
    return int(last) - count + 1


async def known_event_ids(
    conn: AsyncConnection, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of these events the tenant already has."""
    query = select(_events.id).where(_events.tenant_id == tenant_id, _events.id.in_(ids))
    return set((await conn.execute(query)).scalars())


async def insert_rows(conn: AsyncConnection, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Inserts the rows, if any, in one statement."""
    if rows:
        await conn.execute(insert(table), list(rows))


async def enabled_endpoints(conn: AsyncConnection, tenant_id: uuid.UUID) -> Sequence[Any]:
    """The tenant's endpoints that receive events: their ids and event types."""
    query = select(_endpoints.c.id, _endpoints.c.event_types).where(
        _endpoints.c.tenant_id == tenant_id, _endpoints.c.enabled.is_(True)
    )
    rows: Sequence[Any] = (await conn.execute(query)).all()
    return rows


async def feed(
    conn: AsyncConnection, tenant_id: uuid.UUID, *, after: int, limit: int, type_prefix: str | None
) -> Sequence[Any]:
    """The tenant's events numbered after `after`, in order, `limit` at most; of one type (or family,
    ending in "."), when given."""
    where = [_events.tenant_id == tenant_id, _events.seq > after]
    if type_prefix is not None:
        where.append(
            _events.type.startswith(type_prefix, autoescape=True)
            if type_prefix.endswith(".")
            else _events.type == type_prefix
        )
    query = select(models.events).where(*where).order_by(_events.seq).limit(limit)
    return (await conn.execute(query)).all()


async def event_at(conn: AsyncConnection, tenant_id: uuid.UUID, seq: int) -> Row[Any] | None:
    """The tenant's event with this number, while it is kept."""
    query = select(models.events).where(_events.tenant_id == tenant_id, _events.seq == seq)
    return (await conn.execute(query)).first()


async def fail_pending(
    conn: AsyncConnection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, reason: str
) -> None:
    """Ends the endpoint's pending deliveries as failed, for `reason`."""
    d = _deliveries.c
    now = utcnow()
    await conn.execute(
        update(_deliveries)
        .where(d.tenant_id == tenant_id, d.endpoint_id == endpoint_id, d.status == "pending")
        .values(status="failed", next_attempt_at=None, last_error=reason, updated_at=now)
    )


async def claim_due(
    conn: AsyncConnection,
    *,
    now: dt.datetime,
    limit: int,
    busy_endpoints: Sequence[uuid.UUID] = (),
    busy_tenants: Sequence[uuid.UUID] = (),
) -> Sequence[Row[Any]]:
    """Pending deliveries due by `now`, oldest due first, but for the busy endpoints and tenants, with
    their endpoint's address and secrets and their event: locked, skipping those another sender holds."""
    d, e, ev = _deliveries.c, _endpoints.c, _events
    query = (
        select(
            d.tenant_id,
            d.id,
            d.endpoint_id,
            d.attempts,
            d.created_at,
            d.event_seq,
            e.url,
            e.enabled,
            e.signing_secret,
            e.previous_secret,
            e.previous_secret_expires_at,
            e.last_success_at,
            ev.id.label("event_id"),
            ev.type.label("event_type"),
            ev.occurred_at,
            ev.data,
        )
        .select_from(
            _deliveries.join(_endpoints, and_(e.tenant_id == d.tenant_id, e.id == d.endpoint_id)).outerjoin(
                models.events, and_(ev.tenant_id == d.tenant_id, ev.seq == d.event_seq)
            )
        )
        .where(
            d.next_attempt_at <= now,
            d.status == "pending",
            d.endpoint_id.not_in(busy_endpoints),
            d.tenant_id.not_in(busy_tenants),
        )
        .order_by(d.next_attempt_at)
        .limit(limit)
        .with_for_update(of=_deliveries, skip_locked=True)
    )
    rows: Sequence[Any] = (await conn.execute(query)).all()
    return rows


async def hold(
    conn: AsyncConnection, keys: Sequence[tuple[uuid.UUID, uuid.UUID]], until: dt.datetime
) -> None:
    """Leases deliveries to this sender until `until` (another sender takes them over after that)."""
    d = _deliveries.c
    for tenant_id, delivery_id in keys:
        await conn.execute(
            update(_deliveries)
            .where(d.tenant_id == tenant_id, d.id == delivery_id)
            .values(next_attempt_at=until)
        )


async def settle(
    conn: AsyncConnection, tenant_id: uuid.UUID, delivery_id: uuid.UUID, values: Mapping[str, Any]
) -> None:
    """Records how an attempt of a delivery went."""
    d = _deliveries.c
    await conn.execute(
        update(_deliveries).where(d.tenant_id == tenant_id, d.id == delivery_id).values(**values)
    )


async def update_endpoint(
    conn: AsyncConnection, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, values: Mapping[str, Any]
) -> None:
    """Changes an endpoint's stamps (its last success, or its disabling)."""
    e = _endpoints.c
    await conn.execute(
        update(_endpoints).where(e.tenant_id == tenant_id, e.id == endpoint_id).values(**values)
    )
