"""Contact use cases: each contact belongs to an account of its tenant."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit import AuditLog
from services.common.crud import TenantTable
from services.common.db import Database
from services.common.errors import FieldError, ValidationError
from services.common.events.outbox import Outbox
from services.common.identity import Identity
from services.common.paging import UNSIGNED, Cursors
from services.common.resource import ResourceService, View
from services.crm.models import DEFAULT_SOURCE


class ContactService(ResourceService):
    """Contacts: always attached to an account of the caller's tenant."""

    resource = "contact"
    not_found = "Contact not found."

    def __init__(
        self,
        *,
        db: Database,
        table: TenantTable,
        audit: AuditLog,
        accounts: TenantTable,
        outbox: Outbox | None = None,
        cursors: Cursors = UNSIGNED,
        announce: View | None = None,
    ) -> None:
        super().__init__(db=db, table=table, audit=audit, outbox=outbox, cursors=cursors, announce=announce)
        self._accounts = accounts

    async def lookup(self, caller: Identity, ids: Collection[uuid.UUID]) -> Sequence[Row[Any]]:
        """The caller's contacts among `ids`: id and email only (for services checking references)."""
        return await self.table.read_among(
            self._db, tenant_id=caller.tenant_id, ids=ids, columns=("id", "email")
        )

    async def _require_account(self, conn: AsyncConnection, caller: Identity, fields: dict[str, Any]) -> None:
        if "account_id" not in fields:
            return
        if await self._accounts.get(conn, tenant_id=caller.tenant_id, row_id=fields["account_id"]) is None:
            raise ValidationError(FieldError(("body", "account_id"), "Account not found", "not_found"))

    async def before_create(
        self, conn: AsyncConnection, caller: Identity, fields: dict[str, Any]
    ) -> dict[str, Any]:
        await self._require_account(conn, caller, fields)
        return {"source": DEFAULT_SOURCE, **fields}

    async def before_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], fields: dict[str, Any]
    ) -> dict[str, Any]:
        await self._require_account(conn, caller, fields)
        return fields
