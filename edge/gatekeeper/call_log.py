"""The MCP call log: a row per tool call, read back by the tenant a page at a time, purged after the
retention the event records have."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, tuple_

from edge.gatekeeper.models import tool_calls
from services.common.batching import GroupCommitWriter
from services.common.db import Database, DirectConnection
from services.common.fields import parse_limit, utcnow
from services.common.paging import decode_cursor, encode_cursor

CALL_LOG_PURGE_SECONDS = 3600.0


async def _insert_calls(conn: DirectConnection, rows: Sequence[dict[str, Any]]) -> None:
    await conn.insert_many(tool_calls, rows)


@dataclass(frozen=True)
class CallPage:
    """Calls, newest first, and the cursor to the next page."""

    rows: Sequence[Any]
    next_cursor: str | None


class CallLog:
    """Tool calls in the gatekeeper's database."""

    def __init__(
        self, db: Database, *, keep: dt.timedelta, cursor_key: bytes, logger: logging.Logger
    ) -> None:
        self._db = db
        self._keep = keep
        self._cursor_key = cursor_key
        self._log = logger
        # Calls answered at once share a commit: one transaction per batch, not per call.
        self._writer: GroupCommitWriter[dict[str, Any]] = GroupCommitWriter(
            db=db, insert_many=_insert_calls, logger=logger, max_batch=500
        )
        self._committing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Starts committing recorded calls; until `close`, which comes after the listener's own, so
        that every call under way is logged before the process stops."""
        self._committing = asyncio.get_running_loop().create_task(self._writer.run())

    async def close(self) -> None:
        await self._writer.flush()
        if self._committing is not None:
            self._committing.cancel()
            await asyncio.gather(self._committing, return_exceptions=True)

    async def record(
        self,
        *,
        tenant_id: str,
        key_id: str,
        surface: str,
        tool: str,
        scope: str,
        latency_ms: float,
        status: str,
    ) -> None:
        """Returns once the row is committed."""
        await self._writer.write(
            {
                "tenant_id": uuid.UUID(tenant_id),
                "id": uuid.uuid4(),
                "key_id": key_id[:64],
                "surface": surface,
                "tool": tool[:100],
                "scope": scope,
                "latency_ms": round(latency_ms, 2),
                "status": status,
                "at": utcnow(),
            }
        )

    async def page(
        self, tenant_id: uuid.UUID, surface: str, *, limit: int | None, cursor: str | None
    ) -> CallPage:
        size = parse_limit(limit, default=50, maximum=100)
        query = select(tool_calls).where(tool_calls.c.tenant_id == tenant_id, tool_calls.c.surface == surface)
        if cursor is not None:
            at, row_id = decode_cursor(cursor, [dt.datetime, uuid.UUID], self._cursor_key)
            query = query.where(tuple_(tool_calls.c.at, tool_calls.c.id) < tuple_(at, row_id))
        query = query.order_by(tool_calls.c.at.desc(), tool_calls.c.id.desc()).limit(size + 1)
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        if len(rows) <= size:
            return CallPage(rows, None)
        last = rows[size - 1]
        return CallPage(rows[:size], encode_cursor([last.at, last.id], self._cursor_key))

    async def purge(self) -> int:
        """Deletes calls older than the retention; how many went."""
        async with self._db.transaction() as conn:
            gone = await conn.execute(delete(tool_calls).where(tool_calls.c.at < utcnow() - self._keep))
        return int(gone.rowcount or 0)
