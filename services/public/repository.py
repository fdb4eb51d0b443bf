"""public's tables as query sets. Never commits: the service owns the transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.crud import TenantTable
from services.common.db import DirectConnection
from services.public import models

BY_PATH_LIMIT = 100

sites = TenantTable(models.sites)
form_submissions = TenantTable(models.form_submissions)


async def find_site(conn: AsyncConnection, **unique: uuid.UUID) -> Row[Any] | None:
    """The site with this id or tracking token, whichever tenant owns it (public requests carry none)."""
    query = select(models.sites)
    for column, value in unique.items():
        query = query.where(models.sites.c[column] == value)
    return (await conn.execute(query)).first()


async def insert_page_views(conn: DirectConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Inserts page views in one statement batch."""
    await conn.insert_many(models.page_views, rows)


def _day(conn: AsyncConnection, column: Any) -> Any:
    """The UTC calendar day of a timestamp column, as YYYY-MM-DD text, in this database's dialect."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)  # SQLite keeps UTC timestamps as ISO text


async def page_view_summary(
    conn: AsyncConnection, *, tenant_id: uuid.UUID, site_id: uuid.UUID, since: dt.datetime
) -> dict[str, Any]:
    """Page views and distinct sessions of one site since `since`, per path and per day."""
    c = models.page_views.c
    scope = (c.tenant_id == tenant_id, c.site_id == site_id, c.viewed_at >= since)
    totals = (
        await conn.execute(select(func.count(), func.count(func.distinct(c.session_id))).where(*scope))
    ).one()
    views = func.count().label("views")
    by_path = await conn.execute(
        select(c.page_path, views)
        .where(*scope)
        .group_by(c.page_path)
        .order_by(views.desc(), c.page_path)
        .limit(BY_PATH_LIMIT)
    )
    day = _day(conn, c.viewed_at).label("day")
    by_day = await conn.execute(select(day, func.count()).where(*scope).group_by(day).order_by(day))
    return {
        "page_views": int(totals[0]),
        "sessions": int(totals[1]),
        "by_path": [{"page_path": path, "page_views": int(n)} for path, n in by_path],
        "by_day": [{"date": str(d), "page_views": int(n)} for d, n in by_day],
    }


async def set_submission_lead(
    conn: AsyncConnection, *, tenant_id: uuid.UUID, submission_id: uuid.UUID, lead_id: uuid.UUID
) -> None:
    """Records which crm lead a submission created or found."""
    c = models.form_submissions.c
    await conn.execute(
        update(models.form_submissions)
        .where(c.tenant_id == tenant_id, c.id == submission_id)
        .values(lead_id=lead_id)
    )
