"""Workflows: an owner's create, replace (keeping versions), delete, fork and rating; what others see."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.db import Database
from services.common.errors import Conflict, Forbidden, NotFound, PlanLimitExceeded, Unauthenticated
from services.common.fields import utcnow
from services.common.plans import plan_named
from services.common.resource import Check, accept
from services.workflows import manifest, repository
from services.workflows.models import ADAPTERS, workflows
from services.workflows.paging import Page, Pager

WORKFLOW_NOT_FOUND = "Workflow not found"
_WORKFLOW_ID = re.compile(r"wf_[0-9a-f]{16}")


def new_id(prefix: str) -> str:
    """A fresh id: the prefix (wf, lib) and 16 random hex digits."""
    return f"{prefix}_{secrets.token_hex(8)}"


def require_workflow_id(value: str) -> str:
    """A path's workflow id; anything not shaped like one is simply not found."""
    if not _WORKFLOW_ID.fullmatch(value):
        raise NotFound(WORKFLOW_NOT_FOUND)
    return value


def search_text(fields: dict[str, Any]) -> str:
    """What marketplace search matches: name, description, category and tags."""
    return " ".join(
        [fields["name"], fields.get("description", ""), fields.get("category", ""), *fields.get("tags", [])]
    )


async def visible(
    conn: AsyncConnection, user_id: uuid.UUID, workflow_id: str, *, for_update: bool = False
) -> Any:
    """The workflow if the caller owns it or it is public; another's private one does not exist."""
    row = await repository.workflow(conn, require_workflow_id(workflow_id), for_update=for_update)
    if row is None or (row.user_id != user_id and row.visibility != "public"):
        raise NotFound(WORKFLOW_NOT_FOUND)
    return row


async def owned(conn: AsyncConnection, user_id: uuid.UUID, workflow_id: str) -> Any:
    """The caller's own workflow; a public one of another is visible but not theirs to change."""
    row = await visible(conn, user_id, workflow_id, for_update=True)
    if row.user_id != user_id:
        raise Forbidden("Only the workflow's owner can change it.")
    return row


async def existing_user(conn: AsyncConnection, user_id: uuid.UUID) -> Any:
    """The caller's user row; gone if they deleted their account since the edge last resolved them."""
    found = await repository.user(conn, user_id)
    if found is None:
        raise Unauthenticated("This account was deleted. Sign in again in a minute to start a new one.")
    return found


async def check_workflow_limit(conn: AsyncConnection, user_id: uuid.UUID) -> None:
    """402 when the caller's plan allows no more workflows."""
    plan = plan_named((await existing_user(conn, user_id)).plan)
    if plan.workflows is None:
        return
    have = await repository.count(conn, select(workflows.c.id).where(workflows.c.user_id == user_id))
    if have >= plan.workflows:
        raise PlanLimitExceeded(
            f"The {plan.name} plan allows {plan.workflows} workflows. Upgrade to add more.",
            limit=plan.workflows,
            plan=plan.name,
        )


class WorkflowService:
    """An owner's workflows and what others may see of them."""

    def __init__(self, db: Database, pager: Pager) -> None:
        self._db = db
        self._pager = pager

    async def list_own(
        self, user_id: uuid.UUID, *, visibility: str | None, limit: int | None, cursor: str | None
    ) -> Page:
        query = repository.listed_columns().where(workflows.c.user_id == user_id)
        if visibility is not None:
            query = query.where(workflows.c.visibility == visibility)
        async with self._db.read() as conn:
            return await self._pager.page(
                conn,
                query,
                [workflows.c.created_at, workflows.c.id],
                [dt.datetime, str],
                limit=limit,
                cursor=cursor,
            )

    async def get(self, user_id: uuid.UUID, workflow_id: str) -> Any:
        async with self._db.read() as conn:
            return await visible(conn, user_id, workflow_id)

    async def create(self, user_id: uuid.UUID, fields: dict[str, Any]) -> Any:
        manifest.check(fields["manifest"])
        values = _workflow_values(fields)
        async with self._db.transaction() as conn:
            await check_workflow_limit(conn, user_id)
            workflow_id = await self._insert(
                conn, user_id, values, source_type="owned", source_user_id=user_id
            )
            return await repository.workflow(conn, workflow_id)

    async def _insert(
        self,
        conn: AsyncConnection,
        user_id: uuid.UUID,
        values: dict[str, Any],
        *,
        source_type: str,
        source_user_id: uuid.UUID,
    ) -> str:
        """A new workflow at its first version, in its owner's library."""
        now = utcnow()
        workflow_id = new_id("wf")
        await repository.insert_workflow(
            conn,
            {
                "id": workflow_id,
                "user_id": user_id,
                "current_version": manifest.FIRST_VERSION,
                "featured_at": None,
                "forks": 0,
                "subscribers": 0,
                "rating_total": 0,
                "rating_count": 0,
                "forked_from_id": None,
                "forked_from_user_id": None,
                "forked_from_version": None,
                **values,
                "created_at": now,
                "updated_at": now,
            },
        )
        await repository.add_version(
            conn,
            {
                "workflow_id": workflow_id,
                "version": manifest.FIRST_VERSION,
                "manifest": values["manifest"],
                "created_at": now,
            },
        )
        await repository.insert_entry(
            conn,
            {
                "id": new_id("lib"),
                "user_id": user_id,
                "workflow_id": workflow_id,
                "source_type": source_type,
                "source_user_id": source_user_id,
                "is_active": True,
                "enabled_adapters": list(ADAPTERS),
                "auto_update": True,
                "pinned_version": None,
                "rating": None,
                "added_at": now,
                "updated_at": now,
            },
        )
        return workflow_id

    async def replace(
        self, user_id: uuid.UUID, workflow_id: str, fields: dict[str, Any], *, check: Check = accept
    ) -> Any:
        """Replaces an owned workflow (once `check` accepts it as it is); a changed manifest becomes a
        new version."""
        manifest.check(fields["manifest"])
        values = _workflow_values(fields)
        async with self._db.transaction() as conn:
            before = await owned(conn, user_id, workflow_id)
            check(before)
            version = manifest.next_version(before.current_version, before.manifest, values["manifest"])
            now = utcnow()
            if version != before.current_version:
                await repository.add_version(
                    conn,
                    {
                        "workflow_id": before.id,
                        "version": version,
                        "manifest": values["manifest"],
                        "created_at": now,
                    },
                )
            await repository.update_workflow(
                conn, before.id, {**values, "current_version": version, "updated_at": now}
            )
            return await repository.workflow(conn, before.id)

    async def delete(self, user_id: uuid.UUID, workflow_id: str, *, check: Check = accept) -> str:
        async with self._db.transaction() as conn:
            row = await owned(conn, user_id, workflow_id)
            check(row)
            await repository.adjust(conn, row.forked_from_id, forks=-1)
            await repository.delete_workflows(conn, [row.id])
        return row.id

    async def versions(self, user_id: uuid.UUID, workflow_id: str) -> Sequence[Any]:
        async with self._db.read() as conn:
            row = await visible(conn, user_id, workflow_id)
            return await repository.versions(conn, row.id)

    async def fork(self, user_id: uuid.UUID, workflow_id: str, name: str | None) -> Any:
        """A private copy of a visible workflow's current version, in the caller's library."""
        async with self._db.transaction() as conn:
            source = await visible(conn, user_id, workflow_id, for_update=True)
            await check_workflow_limit(conn, user_id)
            values = {
                "name": name or _copy_name(source.name),
                "description": source.description,
                "manifest": source.manifest,
                "visibility": "private",
                "category": source.category,
                "tags": list(source.tags),
            }
            values["search_text"] = search_text(values)
            values.update(
                forked_from_id=source.id,
                forked_from_user_id=source.user_id,
                forked_from_version=source.current_version,
            )
            copy_id = await self._insert(
                conn, user_id, values, source_type="forked", source_user_id=source.user_id
            )
            await repository.adjust(conn, source.id, forks=1)
            return await repository.workflow(conn, copy_id)

    async def rate(self, user_id: uuid.UUID, workflow_id: str, rating: int) -> Any:
        """Rates a workflow the caller holds in their library and does not own."""
        async with self._db.transaction() as conn:
            row = await visible(conn, user_id, workflow_id, for_update=True)
            if row.user_id == user_id:
                raise Forbidden("You cannot rate your own workflow.")
            entry = await repository.entry(conn, user_id, row.id)
            if entry is None:
                raise Conflict("Add the workflow to your library before rating it.")
            await repository.update_entry(conn, entry.id, {"rating": rating, "updated_at": utcnow()})
            await repository.adjust(
                conn,
                row.id,
                rating_total=rating - (entry.rating or 0),
                rating_count=0 if entry.rating else 1,
            )
            return await repository.workflow(conn, row.id)

    async def set_featured(self, workflow_id: str, featured: bool) -> None:
        async with self._db.transaction() as conn:
            row = await repository.workflow(conn, require_workflow_id(workflow_id))
            if row is None:
                raise NotFound(WORKFLOW_NOT_FOUND)
            if featured and row.visibility != "public":
                raise Conflict("Only a public workflow can be featured.")
            await repository.update_workflow(conn, row.id, {"featured_at": utcnow() if featured else None})


def _workflow_values(fields: dict[str, Any]) -> dict[str, Any]:
    values = {
        "name": fields["name"],
        "description": fields.get("description", ""),
        "manifest": fields["manifest"],
        "visibility": fields.get("visibility", "private"),
        "category": fields.get("category", ""),
        "tags": list(dict.fromkeys(fields.get("tags", []))),
    }
    values["search_text"] = search_text(values)
    return values


def _copy_name(name: str) -> str:
    suffix = " (copy)"
    return name[: 100 - len(suffix)] + suffix
