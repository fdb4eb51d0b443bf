"""Deployments: an owner's workflows served at one MCP endpoint, its adapters, keys and usage."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database
from services.common.errors import FieldError, NotFound, PlanLimitExceeded, ValidationError
from services.common.fields import utcnow
from services.common.plans import Plan, plan_named
from services.common.resource import Check, accept
from services.workflows import repository
from services.workflows.models import (
    ADAPTERS,
    deployment_connections,
    deployment_keys,
    deployment_workflows,
    deployments,
    library_entries,
    ordered_adapters,
    users,
    workflow_versions,
    workflows,
)
from services.workflows.paging import Page, Pager
from services.workflows.workflows import existing_user, new_id

DEPLOYMENT_NOT_FOUND = "Deployment not found"
KEY_PREFIX = "dk_"
PERIOD_DAYS = {"day": 1, "week": 7, "month": 30}
_DEPLOYMENT_ID = re.compile(r"dep_[0-9a-f]{16}")
# Told when a deployment stops serving (deleted or deactivated), so live sessions end at once.
Cut = Callable[[str], Awaitable[None]]


def require_deployment_id(value: str) -> str:
    """A path's deployment id; anything not shaped like one is simply not found."""
    if not _DEPLOYMENT_ID.fullmatch(value):
        raise NotFound(DEPLOYMENT_NOT_FOUND)
    return value


def key_digest(secret: str) -> str:
    """How a deployment key is kept (its secret is random enough to need no salt)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def month_start(now: dt.datetime) -> dt.datetime:
    return dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Served:
    """What a deployment's MCP endpoint serves, and who may connect to it."""

    id: str
    user_id: uuid.UUID
    status: str
    allow_anonymous: bool
    enabled_adapters: Sequence[str]
    workflows: Sequence[Any]  # rows: workflow_id, name, version, description, manifest


async def served_workflows(conn: AsyncConnection, deployment_ids: Sequence[str]) -> dict[str, list[Any]]:
    """Each deployment's workflows still owned by, or in the library of, its owner; in order."""
    entry = library_entries.alias("entry")
    version = func.coalesce(entry.c.pinned_version, workflows.c.current_version)
    query = (
        select(
            deployment_workflows.c.deployment_id,
            workflows.c.id.label("workflow_id"),
            workflows.c.name,
            workflows.c.description,
            workflow_versions.c.manifest,  # of the version served, pinned or current
            version.label("version"),
            (workflows.c.user_id == deployments.c.user_id).label("is_owned"),
        )
        .join(deployments, deployments.c.id == deployment_workflows.c.deployment_id)
        .join(workflows, workflows.c.id == deployment_workflows.c.workflow_id)
        .outerjoin(
            entry,
            and_(entry.c.workflow_id == workflows.c.id, entry.c.user_id == deployments.c.user_id),
        )
        .join(
            workflow_versions,
            and_(workflow_versions.c.workflow_id == workflows.c.id, workflow_versions.c.version == version),
        )
        .where(
            deployment_workflows.c.deployment_id.in_(deployment_ids),
            (workflows.c.user_id == deployments.c.user_id) | entry.c.id.is_not(None),
        )
        .order_by(deployment_workflows.c.deployment_id, deployment_workflows.c.position)
    )
    found: dict[str, list[Any]] = {deployment_id: [] for deployment_id in deployment_ids}
    for row in await conn.execute(query):
        found[row.deployment_id].append(row)
    return found


class DeploymentService:
    """The caller's deployments."""

    def __init__(self, db: Database, pager: Pager, *, public_base_url: str, cut: Cut | None = None) -> None:
        self._db = db
        self._pager = pager
        self._base = public_base_url.rstrip("/")
        self._cut = cut

    def endpoint(self, deployment_id: str) -> str:
        return f"{self._base}/v1/mcp/{deployment_id}"

    async def list_own(
        self, user_id: uuid.UUID, *, status: str | None, limit: int | None, cursor: str | None
    ) -> tuple[Page, list[dict[str, Any]]]:
        query = select(deployments).where(deployments.c.user_id == user_id)
        if status is not None:
            query = query.where(deployments.c.status == status)
        async with self._db.read() as conn:
            page = await self._pager.page(
                conn,
                query,
                [deployments.c.created_at, deployments.c.id],
                [dt.datetime, str],
                limit=limit,
                cursor=cursor,
            )
            return page, await self._views(conn, page.rows)

    async def _views(self, conn: AsyncConnection, rows: Sequence[Any]) -> list[dict[str, Any]]:
        ids = [row.id for row in rows]
        served = await served_workflows(conn, ids)
        usage = {
            row.deployment_id: row
            for row in await conn.execute(
                select(
                    deployment_connections.c.deployment_id,
                    func.count().label("connections"),
                    func.max(deployment_connections.c.connected_at).label("last"),
                )
                .where(
                    deployment_connections.c.deployment_id.in_(ids),
                    deployment_connections.c.connected_at >= month_start(utcnow()),
                )
                .group_by(deployment_connections.c.deployment_id)
            )
        }
        return [self._view(row, served[row.id], usage.get(row.id)) for row in rows]

    def _view(self, row: Any, served: Sequence[Any], usage: Any) -> dict[str, Any]:
        return {
            "deployment_id": row.id,
            "name": row.name,
            "description": row.description,
            "workflows": [
                {"workflow_id": w.workflow_id, "name": w.name, "version": w.version, "is_owned": w.is_owned}
                for w in served
            ],
            "enabled_adapters": row.enabled_adapters,
            "status": row.status,
            "allow_anonymous": row.allow_anonymous,
            "mcp_endpoint": self.endpoint(row.id),
            "usage": {
                "connections_this_month": usage.connections if usage else 0,
                "last_connected_at": usage.last if usage else None,
            },
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }

    async def _view_of(self, conn: AsyncConnection, deployment_id: str) -> dict[str, Any]:
        row = (await conn.execute(select(deployments).where(deployments.c.id == deployment_id))).one()
        (view,) = await self._views(conn, [row])
        return view

    async def get(self, user_id: uuid.UUID, deployment_id: str) -> dict[str, Any]:
        async with self._db.read() as conn:
            row = await self._owned(conn, user_id, deployment_id)
            return await self._view_of(conn, row.id)

    async def create(self, user_id: uuid.UUID, fields: dict[str, Any]) -> dict[str, Any]:
        async with self._db.transaction() as conn:
            plan = plan_named((await existing_user(conn, user_id)).plan)
            have = await repository.count(
                conn, select(deployments.c.id).where(deployments.c.user_id == user_id)
            )
            if plan.deployments is not None and have >= plan.deployments:
                raise PlanLimitExceeded(
                    f"The {plan.name} plan allows {plan.deployments} deployments. Upgrade to add more.",
                    limit=plan.deployments,
                    plan=plan.name,
                )
            workflow_ids = await self._usable(conn, user_id, fields["workflowIds"])
            now = utcnow()
            deployment_id = new_id("dep")
            await conn.execute(
                insert(deployments).values(
                    id=deployment_id,
                    user_id=user_id,
                    name=fields["name"],
                    description=fields.get("description"),
                    enabled_adapters=ordered_adapters(fields.get("enabledAdapters", ADAPTERS)),
                    allow_anonymous=fields.get("allowAnonymous", False),
                    status="active",
                    created_at=now,
                    updated_at=now,
                )
            )
            await self._serve(conn, deployment_id, workflow_ids)
            return await self._view_of(conn, deployment_id)

    async def update(
        self, user_id: uuid.UUID, deployment_id: str, fields: dict[str, Any], *, check: Check = accept
    ) -> dict[str, Any]:
        """Changes a deployment once `check` accepts it as it is (its view, as GET answers it)."""
        async with self._db.transaction() as conn:
            row = await self._owned(conn, user_id, deployment_id, for_update=True)
            check(await self._view_of(conn, row.id))
            values: dict[str, Any] = {"updated_at": utcnow()}
            for field, column in (
                ("name", "name"),
                ("description", "description"),
                ("allowAnonymous", "allow_anonymous"),
            ):
                if field in fields:
                    values[column] = fields[field]
            if "enabledAdapters" in fields:
                values["enabled_adapters"] = ordered_adapters(fields["enabledAdapters"])
            if "workflowIds" in fields:
                workflow_ids = await self._usable(conn, user_id, fields["workflowIds"])
                await conn.execute(
                    delete(deployment_workflows).where(deployment_workflows.c.deployment_id == row.id)
                )
                await self._serve(conn, row.id, workflow_ids)
            await conn.execute(update(deployments).where(deployments.c.id == row.id).values(**values))
            return await self._view_of(conn, row.id)

    async def set_adapter(
        self, user_id: uuid.UUID, deployment_id: str, adapter: str, enabled: bool
    ) -> list[str]:
        async with self._db.transaction() as conn:
            row = await self._owned(conn, user_id, deployment_id, for_update=True)
            chosen = (
                set(row.enabled_adapters) | {adapter} if enabled else set(row.enabled_adapters) - {adapter}
            )
            adapters = ordered_adapters(chosen)
            await conn.execute(
                update(deployments)
                .where(deployments.c.id == row.id)
                .values(enabled_adapters=adapters, updated_at=utcnow())
            )
        return adapters

    async def set_status(self, user_id: uuid.UUID, deployment_id: str, status: str) -> dict[str, Any]:
        async with self._db.transaction() as conn:
            row = await self._owned(conn, user_id, deployment_id, for_update=True)
            await conn.execute(
                update(deployments)
                .where(deployments.c.id == row.id)
                .values(status=status, updated_at=utcnow())
            )
            view = await self._view_of(conn, row.id)
        if status != "active" and self._cut is not None:
            await self._cut(row.id)
        return view

    async def delete(self, user_id: uuid.UUID, deployment_id: str, *, check: Check = accept) -> str:
        async with self._db.transaction() as conn:
            row = await self._owned(conn, user_id, deployment_id, for_update=True)
            check(await self._view_of(conn, row.id))
            await conn.execute(delete(deployments).where(deployments.c.id == row.id))
        if self._cut is not None:
            await self._cut(row.id)
        return str(row.id)

    async def usage(self, user_id: uuid.UUID, deployment_id: str, period: str) -> dict[str, Any]:
        now = utcnow()
        days = PERIOD_DAYS[period]
        first_day = (now - dt.timedelta(days=days - 1)).date()
        since = dt.datetime.combine(first_day, dt.time(), tzinfo=dt.UTC)
        async with self._db.read() as conn:
            row = await self._owned(conn, user_id, deployment_id)
            plan = plan_named((await existing_user(conn, user_id)).plan)
            times = (
                await conn.execute(
                    select(deployment_connections.c.adapter, deployment_connections.c.connected_at).where(
                        deployment_connections.c.deployment_id == row.id,
                        deployment_connections.c.connected_at >= since,
                    )
                )
            ).all()
            this_month = await monthly_connections(conn, user_id, now)
        by_day = {first_day + dt.timedelta(days=i): 0 for i in range(days)}
        by_adapter = dict.fromkeys(ADAPTERS, 0)
        for adapter, connected_at in times:
            day = (connected_at if connected_at.tzinfo else connected_at.replace(tzinfo=dt.UTC)).date()
            by_day[day] = by_day.get(day, 0) + 1
            by_adapter[adapter] = by_adapter.get(adapter, 0) + 1
        limit = plan.connections_per_month
        return {
            "deployment_id": row.id,
            "period": period,
            "connections": {
                "total": len(times),
                "limit": limit,
                "remaining": None if limit is None else max(0, limit - this_month),
            },
            "by_adapter": by_adapter,
            "by_day": [{"date": day.isoformat(), "count": count} for day, count in sorted(by_day.items())],
        }

    async def create_key(self, user_id: uuid.UUID, deployment_id: str, name: str) -> dict[str, Any]:
        secret = KEY_PREFIX + secrets.token_urlsafe(24)
        key = {"id": uuid.uuid4(), "name": name, "digest": key_digest(secret), "created_at": utcnow()}
        async with self._db.transaction() as conn:
            row = await self._owned(conn, user_id, deployment_id)
            await conn.execute(insert(deployment_keys).values(deployment_id=row.id, **key))
        return {
            "key_id": key["id"],
            "deployment_id": row.id,
            "name": name,
            "key": secret,
            "created_at": key["created_at"],
        }

    async def delete_key(self, user_id: uuid.UUID, deployment_id: str, key_id: str) -> None:
        try:
            key_uuid = uuid.UUID(key_id)
        except ValueError:
            raise NotFound("Deployment key not found") from None
        async with self._db.transaction() as conn:
            row = await self._owned(conn, user_id, deployment_id)
            removed = await conn.execute(
                delete(deployment_keys).where(
                    deployment_keys.c.id == key_uuid, deployment_keys.c.deployment_id == row.id
                )
            )
            if not removed.rowcount:
                raise NotFound("Deployment key not found")

    async def _owned(
        self, conn: AsyncConnection, user_id: uuid.UUID, deployment_id: str, *, for_update: bool = False
    ) -> Any:
        query = select(deployments).where(
            deployments.c.id == require_deployment_id(deployment_id), deployments.c.user_id == user_id
        )
        if for_update and conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise NotFound(DEPLOYMENT_NOT_FOUND)
        return row

    async def _usable(
        self, conn: AsyncConnection, user_id: uuid.UUID, workflow_ids: Sequence[str]
    ) -> list[str]:
        """The ids given, each once, if every one is the caller's own or in their library."""
        wanted = list(dict.fromkeys(workflow_ids))
        if not wanted:
            raise ValidationError(
                FieldError(("body", "workflowIds"), "Give at least one workflow", "too_short")
            )
        usable = set(
            (
                await conn.execute(
                    select(workflows.c.id)
                    .outerjoin(
                        library_entries,
                        and_(
                            library_entries.c.workflow_id == workflows.c.id,
                            library_entries.c.user_id == user_id,
                        ),
                    )
                    .where(
                        workflows.c.id.in_(wanted),
                        (workflows.c.user_id == user_id) | library_entries.c.id.is_not(None),
                    )
                )
            ).scalars()
        )
        errors = [
            FieldError(
                ("body", "workflowIds", index),
                "Not a workflow you own or hold in your library",
                "value_error",
            )
            for index, workflow_id in enumerate(workflow_ids)
            if workflow_id not in usable
        ]
        if errors:
            raise ValidationError(errors)
        return wanted

    async def _serve(self, conn: AsyncConnection, deployment_id: str, workflow_ids: Sequence[str]) -> None:
        await conn.execute(
            insert(deployment_workflows),
            [
                {"deployment_id": deployment_id, "workflow_id": workflow_id, "position": position}
                for position, workflow_id in enumerate(workflow_ids)
            ],
        )

    # What the MCP endpoint asks.

    async def served(self, deployment_id: str) -> Served | None:
        """The deployment at an endpoint, with what it serves; None when there is none."""
        if not _DEPLOYMENT_ID.fullmatch(deployment_id):
            return None
        async with self._db.read() as conn:
            row = (await conn.execute(select(deployments).where(deployments.c.id == deployment_id))).first()
            if row is None:
                return None
            served = await served_workflows(conn, [row.id])
        return Served(
            row.id, row.user_id, row.status, row.allow_anonymous, row.enabled_adapters, served[row.id]
        )

    async def holds_key(self, deployment_id: str, secret: str) -> bool:
        """Whether `secret` is a live key of this deployment."""
        async with self._db.read() as conn:
            found = await conn.execute(
                select(deployment_keys.c.id).where(
                    deployment_keys.c.digest == key_digest(secret),
                    deployment_keys.c.deployment_id == deployment_id,
                )
            )
            return found.first() is not None

    async def user_of(self, subject: str) -> uuid.UUID | None:
        """The user a verified ID token's subject names, if they have signed in before."""
        async with self._db.read() as conn:
            found = await repository.user_by_subject(conn, subject)
        return found.id if found is not None else None

    async def connect(self, deployment: Served, adapter: str) -> None:
        """Counts a new session against the owner's monthly allowance (402 when it is spent)."""
        async with self._db.transaction() as conn:
            owner_query = select(users).where(users.c.id == deployment.user_id)
            if conn.dialect.name == "postgresql":
                owner_query = owner_query.with_for_update()  # one count at a time per owner
            owner = (await conn.execute(owner_query)).first()
            if owner is None:
                raise NotFound(DEPLOYMENT_NOT_FOUND)
            now = utcnow()
            plan: Plan = plan_named(owner.plan)
            limit = plan.connections_per_month
            if limit is not None and await monthly_connections(conn, owner.id, now) >= limit:
                raise PlanLimitExceeded(
                    f"This deployment's owner has used the {limit} connections the {plan.name} plan "
                    "allows this month.",
                    limit=limit,
                    plan=plan.name,
                )
            await conn.execute(
                insert(deployment_connections).values(
                    id=uuid.uuid4(),
                    deployment_id=deployment.id,
                    user_id=owner.id,
                    adapter=adapter,
                    connected_at=now,
                )
            )


async def monthly_connections(conn: AsyncConnection, user_id: uuid.UUID, now: dt.datetime) -> int:
    """Sessions opened at any of a user's deployments since the month began (UTC)."""
    return await repository.count(
        conn,
        select(deployment_connections.c.id).where(
            deployment_connections.c.user_id == user_id,
            deployment_connections.c.connected_at >= month_start(now),
        ),
    )
