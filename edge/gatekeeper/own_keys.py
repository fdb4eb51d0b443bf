"""A tenant's own keys, managed over HTTP by its keys: never more than the calling key grants."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from edge.gatekeeper import repository
from edge.gatekeeper.key_admin import KeyAdmin
from services.common.crud import TenantTable
from services.common.db import Database
from services.common.errors import Conflict, FieldError, NotFound, ValidationError
from services.common.fields import aware, parse_limit, utcnow
from services.common.identity import Identity, has_scope
from services.common.paging import Cursors
from services.common.resource import Check, Page, read_page

KEY_NOT_FOUND = "Key not found."
MAX_LIVE_KEYS = 100  # of one kind, per tenant: enough for every integration, too few to hoard


def _invalid(field: str, message: str) -> ValidationError:
    return ValidationError(FieldError(("body", field), message, "value_error"))


class OwnKeys:
    """The calling tenant's keys of one kind (the kind of the calling key, which opens one surface)."""

    def __init__(self, *, db: Database, admin: KeyAdmin, table: TenantTable, cursors: Cursors) -> None:
        self._db = db
        self._admin = admin
        self._table = table
        self._cursors = cursors

    async def list(self, caller: Identity, kind: str, *, limit: int | None, cursor: str | None) -> Page:
        """The tenant's keys of `kind`, newest first, after the one `cursor` names."""
        return await read_page(
            self._db,
            self._table,
            self._cursors,
            tenant_id=caller.tenant_id,
            count=parse_limit(limit),
            cursor=cursor,
            filters={"kind": kind},
        )

    def cursor(self, row: Any) -> str:
        return self._table.cursor(row, self._cursors)

    async def get(self, caller: Identity, kind: str, key_id: uuid.UUID) -> Row[Any]:
        """One of the tenant's keys of `kind`; another tenant's, or another kind's, is not found."""
        async with self._db.read() as conn:
            row = await self._table.get(conn, tenant_id=caller.tenant_id, row_id=key_id)
        if row is None or row.kind != kind:
            raise NotFound(KEY_NOT_FOUND)
        return row

    async def mint(self, caller: Identity, kind: str, fields: Mapping[str, Any]) -> tuple[Row[Any], str]:
        """Mints a key of `kind` with at most the calling key's scopes and rate limit; its secret once."""
        scopes: list[str] = list(fields["scopes"])
        if not scopes:
            raise _invalid("scopes", "A key needs at least one scope")
        beyond = [s for s in scopes if not has_scope(caller.scopes, s)]
        if beyond:
            raise _invalid("scopes", f"A key cannot grant what the calling key lacks: {', '.join(beyond)}")
        ceiling = (await self._calling_key(caller)).rate_limit_per_minute
        limit = self._limit(fields.get("rate_limit_per_minute"), ceiling) or ceiling
        async with self._db.read() as conn:
            live = await repository.count_live_keys(conn, tenant_id=caller.tenant_id, kind=kind, now=utcnow())
        if live >= MAX_LIVE_KEYS:
            raise Conflict(
                f"The tenant has {MAX_LIVE_KEYS} live keys of this kind; revoke one first.",
                code="too_many_keys",
            )
        return await self._admin.mint(
            tenant_id=str(caller.tenant_id),
            kind=kind,
            scopes=scopes,
            rate_limit=limit,
            instance_id="",
            name=fields.get("name") or "",
            expires_at=_expiry(fields.get("expires_at")),
        )

    async def update(
        self, caller: Identity, kind: str, key_id: uuid.UUID, fields: Mapping[str, Any], *, check: Check
    ) -> Row[Any]:
        """Renames a key, or sets its rate limit (at most the calling key's) or its expiry; `check` may
        refuse the key as it is (e.g. If-Match), on the row locked for the write."""
        values: dict[str, Any] = {}
        if "name" in fields:
            values["name"] = fields["name"] or ""
        if "rate_limit_per_minute" in fields:
            ceiling = (await self._calling_key(caller)).rate_limit_per_minute
            values["rate_limit_per_minute"] = self._limit(fields["rate_limit_per_minute"], ceiling) or ceiling
        if "expires_at" in fields:
            values["expires_at"] = _expiry(fields["expires_at"])
        async with self._db.transaction() as conn:
            row = await self._locked(conn, caller, kind, key_id)
            check(row)
            if not values:
                return row
            updated = await repository.update_key(conn, key_id=row.id, values=values)
        assert updated is not None  # locked in this transaction
        return updated

    async def revoke(self, caller: Identity, kind: str, key_id: uuid.UUID, *, check: Check) -> None:
        """Revokes a key (once: a revoked key keeps its first revoked_at); `check` as for update."""
        async with self._db.transaction() as conn:
            row = await self._locked(conn, caller, kind, key_id)
            check(row)
            if row.revoked_at is None:
                await repository.update_key(conn, key_id=row.id, values={"revoked_at": utcnow()})

    async def _locked(
        self, conn: AsyncConnection, caller: Identity, kind: str, key_id: uuid.UUID
    ) -> Row[Any]:
        row = await self._table.get(conn, tenant_id=caller.tenant_id, row_id=key_id, for_update=True)
        if row is None or row.kind != kind:
            raise NotFound(KEY_NOT_FOUND)
        return row

    async def _calling_key(self, caller: Identity) -> Row[Any]:
        async with self._db.read() as conn:
            row = await repository.get_key(conn, key_id=uuid.UUID(caller.key_id))
        if row is None:  # revoked and gone between the edge's check and now: as if it were not found
            raise NotFound(KEY_NOT_FOUND)
        return row

    @staticmethod
    def _limit(value: int | None, ceiling: int) -> int | None:
        if value is not None and value > ceiling:
            raise _invalid("rate_limit_per_minute", f"At most the calling key's own limit, {ceiling}")
        return value


def _expiry(value: str | None) -> dt.datetime | None:
    """An expires_at from the body: a future date-time (UTC when it names no offset), or None for never."""
    if value is None:
        return None
    try:
        moment = aware(dt.datetime.fromisoformat(value))
    except ValueError:
        raise _invalid("expires_at", "Input should be a date-time (RFC 3339)") from None
    if moment <= utcnow():
        raise _invalid("expires_at", "Input should be in the future")
    return moment.astimezone(dt.UTC)
