"""Instance and channel use cases, each one audited transaction."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit import AuditLog
from services.common.crud import TenantTable
from services.common.db import Database
from services.common.errors import FieldError, NotFound, ValidationError
from services.common.events.outbox import Outbox
from services.common.identity import Identity
from services.common.outbound import HostPolicy
from services.common.paging import UNSIGNED, Cursors
from services.common.resource import Page, ResourceService, View
from services.instances.models import DEFAULT_MODEL

INSTANCE_NOT_FOUND = "Instance not found"
INSTANCE_DELETED = "instance.deleted"


def secret_digest(secret: str) -> str:
    """A salted SHA-256 digest of a secret: enough to check a presented secret, useless to a reader."""
    salt = secrets.token_hex(16)
    return f"sha256${salt}${hashlib.sha256((salt + secret).encode()).hexdigest()}"


class InstanceService(ResourceService):
    """Instances: agent settings merge on update; a delete takes the channels and revokes widget tokens."""

    resource = "instance"
    not_found = INSTANCE_NOT_FOUND
    list_default = list_maximum = 1000  # HydraCore lists return every row in scope

    def __init__(
        self,
        *,
        db: Database,
        table: TenantTable,
        audit: AuditLog,
        outbox: Outbox,
        announce: View,  # instance.deleted revokes the instance's widget tokens: always announced
        model_hosts: HostPolicy | None = None,
        cursors: Cursors = UNSIGNED,
    ) -> None:
        super().__init__(db=db, table=table, audit=audit, outbox=outbox, cursors=cursors, announce=announce)
        self._model_hosts = model_hosts or HostPolicy()

    async def prepare(self, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        """Refuses a model server URL on an address tenants may not reach, judged without DNS.

        The public service judges the host again each time it resolves it, before it connects.
        """
        base_url = fields.get("model", {}).get("base_url")
        refusal = self._model_hosts.refusal(base_url) if base_url else None
        if refusal is not None:
            raise ValidationError(FieldError(("body", "model", "base_url"), refusal, "value_error"))
        return {}

    def initial_values(self, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        return {
            "status": "active",
            "description": None,
            "system_prompt": None,
            "knowledge": [],
            **fields,
            "model": {**DEFAULT_MODEL, **fields.get("model", {})},
        }

    async def before_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], fields: dict[str, Any]
    ) -> dict[str, Any]:
        if "model" in fields:
            fields = {**fields, "model": {**DEFAULT_MODEL, **before.model, **fields["model"]}}
        return fields


class ChannelService(ResourceService):
    """Channels of one instance; the webhook secret is kept only as a digest."""

    resource = "channel"
    not_found = "Channel not found"
    list_default = list_maximum = 1000

    def __init__(
        self,
        *,
        db: Database,
        table: TenantTable,
        audit: AuditLog,
        instances: TenantTable,
        outbox: Outbox | None = None,
        cursors: Cursors = UNSIGNED,
        announce: View | None = None,
    ) -> None:
        super().__init__(db=db, table=table, audit=audit, outbox=outbox, cursors=cursors, announce=announce)
        self._instances = instances

    async def list(
        self,
        caller: Identity,
        *,
        limit: int | None,
        filters: Mapping[str, Any] | None = None,
        cursor: str | None = None,
        since: Mapping[str, Any] | None = None,
    ) -> Page:
        """The channels of the instance named in `filters`, which must be the caller's."""
        instance_id = (filters or {})["instance_id"]
        async with self._db.read() as conn:
            await self._require_instance(conn, caller, instance_id)
        return await super().list(caller, limit=limit, filters=filters, cursor=cursor, since=since)

    async def before_create(
        self, conn: AsyncConnection, caller: Identity, fields: dict[str, Any]
    ) -> dict[str, Any]:
        await self._require_instance(conn, caller, fields["instance_id"])
        values = {
            "config": {},
            "connection_id": None,
            "credential_id": None,
            "enabled": True,
            "status": "active",
            "error_message": None,
            "last_event_at": None,
            **fields,
        }
        secret = values.pop("webhook_secret", None)
        values["webhook_secret_digest"] = secret_digest(secret) if secret else None
        return values

    async def _require_instance(
        self, conn: AsyncConnection, caller: Identity, instance_id: uuid.UUID
    ) -> None:
        if await self._instances.get(conn, tenant_id=caller.tenant_id, row_id=instance_id) is None:
            raise NotFound(INSTANCE_NOT_FOUND)
