"""Tenants and keys, administered by the operator CLI and by the services that revoke widget tokens."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Row

from edge.gatekeeper import keys, repository
from services.common.db import Database
from services.common.errors import FieldError, NotFound, ValidationError
from services.common.fields import utcnow

DEFAULT_RATE_LIMIT = 60
MAX_RATE_LIMIT = 1_000_000_000
_SCOPE = re.compile(r"^[a-z][a-z0-9_-]*:([a-z][a-z0-9_-]*|\*)$")


def _invalid(field_name: str, message: str) -> ValidationError:
    return ValidationError(FieldError(("body", field_name), message, "value_error"))


def _uuid(value: str, field_name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _invalid(field_name, "Input should be a valid UUID") from None


class InstanceLookup(Protocol):
    """Whether a tenant has an instance (asked of the instances service)."""

    async def exists(self, tenant_id: uuid.UUID, instance_id: uuid.UUID) -> bool: ...


class KeyAdmin:
    """Tenants and keys, for the operator CLI and the services that revoke them."""

    def __init__(self, *, db: Database, instances: InstanceLookup) -> None:
        self._db = db
        self._instances = instances

    async def create_tenant(self, name: str) -> Row[Any]:
        if not 1 <= len(name.strip()) <= 200:
            raise _invalid("name", "Tenant name must be 1 to 200 characters")
        async with self._db.transaction() as conn:
            return await repository.insert_tenant(
                conn, values={"id": uuid.uuid4(), "name": name.strip(), "created_at": utcnow()}
            )

    async def list_tenants(self) -> Sequence[Row[Any]]:
        async with self._db.read() as conn:
            return await repository.list_tenants(conn)

    async def mint(
        self,
        *,
        tenant_id: str,
        kind: str | None,
        scopes: Sequence[str],
        rate_limit: int,
        instance_id: str,
        name: str,
        expires_at: dt.datetime | None = None,
    ) -> tuple[Row[Any], str]:
        """Mints a key; returns its record and the secret (shown once)."""
        if kind is None:
            raise _invalid("kind", "Key kind must be hmcp, hc_live or widget")
        bad = [s for s in scopes if not _SCOPE.match(s)]
        if bad:
            raise _invalid("scopes", f"Scopes must look like resource:verb; got {', '.join(bad)}")
        limit = rate_limit or DEFAULT_RATE_LIMIT
        if not 1 <= limit <= MAX_RATE_LIMIT:
            raise _invalid("rate_limit_per_minute", f"Rate limit must be 1 to {MAX_RATE_LIMIT}")
        if kind == "widget" and not instance_id:
            raise _invalid("instance_id", "A widget token needs the instance it is bound to")
        if kind != "widget" and instance_id:
            raise _invalid("instance_id", "Only widget tokens are bound to an instance")
        if len(name) > 200:
            raise _invalid("name", "Name must be at most 200 characters")
        tenant = _uuid(tenant_id, "tenant_id")
        instance = _uuid(instance_id, "instance_id") if instance_id else None
        secret = keys.new_secret(kind)
        async with self._db.read() as conn:
            if await repository.get_tenant(conn, tenant_id=tenant) is None:
                raise NotFound("Tenant not found.")
        if instance is not None and not await self._instances.exists(tenant, instance):
            raise NotFound("Instance not found for this tenant.")
        async with self._db.transaction() as conn:
            row = await repository.insert_key(
                conn,
                values={
                    "id": uuid.uuid4(),
                    "tenant_id": tenant,
                    "kind": kind,
                    "name": name,
                    "prefix": secret.prefix,
                    "key_hash": secret.hash,
                    "scopes": " ".join(sorted(set(scopes))),
                    "rate_limit_per_minute": limit,
                    "instance_id": instance,
                    "created_at": utcnow(),
                    "expires_at": expires_at,
                },
            )
        return row, secret.secret

    async def list_keys(self, tenant_id: str) -> Sequence[Row[Any]]:
        tenant = _uuid(tenant_id, "tenant_id") if tenant_id else None
        async with self._db.read() as conn:
            return await repository.list_keys(conn, tenant_id=tenant)

    async def revoke(self, key_id: str) -> Row[Any]:
        async with self._db.transaction() as conn:
            row = await repository.update_key(
                conn, key_id=_uuid(key_id, "id"), values={"revoked_at": utcnow()}
            )
        if row is None:
            raise NotFound("Key not found.")
        return row

    async def revoke_instance_keys(self, tenant_id: str, instance_id: str) -> int:
        """Revokes the live widget tokens of an instance; how many were live."""
        tenant, instance = _uuid(tenant_id, "tenant_id"), _uuid(instance_id, "instance_id")
        async with self._db.transaction() as conn:
            return await repository.revoke_instance_keys(
                conn, tenant_id=tenant, instance_id=instance, at=utcnow()
            )

    async def live_keys(self, tenant_id: uuid.UUID, key_ids: Sequence[str]) -> list[str]:
        """Those of `key_ids` that are the tenant's keys and not revoked (malformed ids are not keys)."""
        ids = []
        for key_id in key_ids:
            try:
                ids.append(uuid.UUID(key_id))
            except ValueError:
                continue
        if not ids:
            return []
        async with self._db.read() as conn:
            live = await repository.live_key_ids(conn, tenant_id=tenant_id, key_ids=ids)
        return sorted(str(key_id) for key_id in live)

    async def key(self, key_id: str) -> Row[Any]:
        """One key's record (never its secret, which is not stored)."""
        async with self._db.read() as conn:
            row = await repository.get_key(conn, key_id=_uuid(key_id, "id"))
        if row is None:
            raise NotFound("Key not found.")
        return row

    async def set_limit(self, key_id: str, limit: int) -> Row[Any]:
        if not 1 <= limit <= MAX_RATE_LIMIT:
            raise _invalid("rate_limit_per_minute", f"Rate limit must be 1 to {MAX_RATE_LIMIT}")
        async with self._db.transaction() as conn:
            row = await repository.update_key(
                conn, key_id=_uuid(key_id, "id"), values={"rate_limit_per_minute": limit}
            )
        if row is None:
            raise NotFound("Key not found.")
        return row
