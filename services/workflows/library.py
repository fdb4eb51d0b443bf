"""Libraries: the workflows a user uses (owned, subscribed, forked), each pinned or following."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from services.common.db import Database
from services.common.errors import Conflict, NotFound
from services.common.fields import utcnow
from services.workflows import repository
from services.workflows.models import ADAPTERS, library_entries, ordered_adapters
from services.workflows.paging import Page, Pager
from services.workflows.workflows import existing_user, new_id, require_workflow_id, visible

ENTRY_NOT_FOUND = "Library entry not found"


class LibraryService:
    """The caller's library."""

    def __init__(self, db: Database, pager: Pager) -> None:
        self._db = db
        self._pager = pager

    async def list(
        self, user_id: uuid.UUID, *, active_only: bool, limit: int | None, cursor: str | None
    ) -> Page:
        query = repository.entry_columns().where(library_entries.c.user_id == user_id)
        if active_only:
            query = query.where(library_entries.c.is_active.is_(True))
        async with self._db.read() as conn:
            return await self._pager.page(
                conn,
                query,
                [library_entries.c.added_at, library_entries.c.id],
                [dt.datetime, str],
                limit=limit,
                cursor=cursor,
            )

    async def add(self, user_id: uuid.UUID, workflow_id: str, fields: dict[str, Any]) -> Any:
        """Subscribes to a workflow another user made public."""
        async with self._db.transaction() as conn:
            row = await visible(conn, user_id, workflow_id, for_update=True)
            await existing_user(conn, user_id)
            if await repository.entry(conn, user_id, row.id) is not None:
                raise Conflict("The workflow is already in your library.")
            now = utcnow()
            auto_update = fields.get("autoUpdate", True)
            entry_id = new_id("lib")
            await repository.insert_entry(
                conn,
                {
                    "id": entry_id,
                    "user_id": user_id,
                    "workflow_id": row.id,
                    "source_type": "subscribed",
                    "source_user_id": row.user_id,
                    "is_active": True,
                    "enabled_adapters": ordered_adapters(fields.get("enabledAdapters", ADAPTERS)),
                    "auto_update": auto_update,
                    "pinned_version": None if auto_update else row.current_version,
                    "rating": None,
                    "added_at": now,
                    "updated_at": now,
                },
            )
            await repository.adjust(conn, row.id, subscribers=1)
            return await repository.entry(conn, user_id, row.id)

    async def update(self, user_id: uuid.UUID, workflow_id: str, fields: dict[str, Any]) -> Any:
        async with self._db.transaction() as conn:
            entry = await self._entry(conn, user_id, workflow_id)
            values: dict[str, Any] = {"updated_at": utcnow()}
            if "isActive" in fields:
                values["is_active"] = fields["isActive"]
            if "enabledAdapters" in fields:
                values["enabled_adapters"] = ordered_adapters(fields["enabledAdapters"])
            if "autoUpdate" in fields and fields["autoUpdate"] != entry.auto_update:
                values["auto_update"] = fields["autoUpdate"]
                # Turning it off pins the version in use now; on, it follows the current one again.
                values["pinned_version"] = None if fields["autoUpdate"] else entry.workflow_version
            await repository.update_entry(conn, entry.id, values)
            return await repository.entry(conn, user_id, entry.workflow_id)

    async def remove(self, user_id: uuid.UUID, workflow_id: str) -> str:
        """Takes a workflow out of the library, with the caller's rating of it."""
        async with self._db.transaction() as conn:
            entry = await self._entry(conn, user_id, workflow_id)
            await repository.delete_entry(conn, entry.id)
            await repository.uncount_entry(conn, entry)
        return str(entry.workflow_id)

    async def _entry(self, conn: Any, user_id: uuid.UUID, workflow_id: str) -> Any:
        entry = await repository.entry(conn, user_id, require_workflow_id(workflow_id))
        if entry is None:
            raise NotFound(ENTRY_NOT_FOUND)
        return entry
