"""Gatekeeper use cases: administer tenants and keys, and decide each request at the edge."""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import Row

from edge.gatekeeper import keys, repository
from edge.gatekeeper.limiter import Limiter, Verdict
from services.common.db import Database
from services.common.errors import (
    FieldError,
    ForbiddenScope,
    HydraError,
    NotFound,
    RateLimited,
    Surface,
    Unauthenticated,
    ValidationError,
)
from services.common.fields import utcnow
from services.common.identity import has_scope

DEFAULT_RATE_LIMIT = 60
MAX_KEYS_ASKED = 1000
MAX_RATE_LIMIT = 1_000_000_000
_SCOPE = re.compile(r"^[a-z][a-z0-9_-]*:([a-z][a-z0-9_-]*|\*)$")
_TOUCH_INTERVAL = 60.0  # seconds between last_used_at writes for one key


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
        if len(key_ids) > MAX_KEYS_ASKED:
            raise _invalid("key_ids", f"At most {MAX_KEYS_ASKED} keys per call")
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


@dataclass(frozen=True)
class KeyRecord:
    """What the edge needs to know about a live key."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    kind: str
    scopes: frozenset[str]
    rate_limit: int
    instance_id: uuid.UUID | None


class _Expiring(OrderedDict[str, tuple[float, KeyRecord | None]]):
    """Entries that expire, least recently used first; the oldest go once there are `size`."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def fresh(self, key: str, now: float) -> tuple[float, KeyRecord | None] | None:
        entry = self.get(key)
        if entry is None or entry[0] <= now:
            return None
        self.move_to_end(key)
        return entry

    def put(self, key: str, value: tuple[float, KeyRecord | None]) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


class KeyStore:
    """Finds live keys by secret, caching briefly (revocation shows within the cache time).

    Live keys and unknown secrets are cached apart, each bounded, least recently used leaving first:
    a flood of random secrets only ever evicts other unknown ones, never the keys in use.
    """

    def __init__(
        self, *, db: Database, ttl: float, max_entries: int = 100_000, max_unknown: int = 10_000
    ) -> None:
        self._db = db
        self._ttl = ttl
        self._known = _Expiring(max_entries)
        self._unknown = _Expiring(max_unknown)
        self._touched: dict[uuid.UUID, float] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._lookups: dict[str, asyncio.Future[KeyRecord | None]] = {}

    async def find(self, secret: str, *, load: bool = True) -> KeyRecord | None:
        """The live key with this secret, or None if unknown or revoked (or not cached, without `load`)."""
        digest = keys.hash_secret(secret)
        now = time.monotonic()
        hit = self._known.fresh(digest, now) or self._unknown.fresh(digest, now)
        if hit is not None:
            return hit[1]
        if not load:
            return None
        # When an entry expires under load, every check in flight misses at once: one query serves them.
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(self._load(digest))
            self._lookups[digest] = lookup
            lookup.add_done_callback(lambda _: self._lookups.pop(digest, None))
        return await asyncio.shield(lookup)

    async def _load(self, digest: str) -> KeyRecord | None:
        async with self._db.read() as conn:
            row = await repository.find_key_by_hash(conn, key_hash=digest)
        record = None
        if row is not None and row.revoked_at is None:
            record = KeyRecord(
                id=row.id,
                tenant_id=row.tenant_id,
                kind=row.kind,
                scopes=frozenset(row.scopes.split()),
                rate_limit=row.rate_limit_per_minute,
                instance_id=row.instance_id,
            )
        cache = self._unknown if record is None else self._known
        cache.put(digest, (time.monotonic() + self._ttl, record))
        (self._known if record is None else self._unknown).pop(digest, None)
        return record

    def touch(self, record: KeyRecord) -> None:
        """Records use of a key, writing last_used_at at most once a minute per key."""
        now = time.monotonic()
        if now - self._touched.get(record.id, -_TOUCH_INTERVAL) < _TOUCH_INTERVAL:
            return
        self._touched[record.id] = now
        task = asyncio.create_task(self._write_last_used(record.id))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write_last_used(self, key_id: uuid.UUID) -> None:
        async with self._db.transaction() as conn:
            await repository.update_key(conn, key_id=key_id, values={"last_used_at": utcnow()})

    async def close(self) -> None:
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


# Auth modes as the edge config names them in each route's policy.
SUPPORT_KEY, CORE_KEY, WIDGET_TOKEN, PUBLIC = "support_key", "core_key", "widget_token", "public"
_KIND_FOR_MODE = {SUPPORT_KEY: "hmcp", CORE_KEY: "hc_live", WIDGET_TOKEN: "widget"}


# What a prior window counts by, as the edge config names it.
BY_CLIENT_IP, BY_INSTANCE = "client_ip", "instance"


@dataclass(frozen=True)
class PriorLimit:
    """A window a request must fit before the key's own: one per client IP or per instance."""

    key: str  # BY_CLIENT_IP or BY_INSTANCE
    name: str
    requests_per_minute: int

    @classmethod
    def parse_all(cls, text: str) -> tuple[PriorLimit, ...]:
        """From the edge config's "key:name:rpm,key:name:rpm"."""
        limits = []
        for item in filter(None, text.split(",")):
            key, name, rpm = item.split(":")
            if key not in (BY_CLIENT_IP, BY_INSTANCE) or not name or not rpm.isdigit():
                raise ValueError(f"bad prior limit {item!r}")
            limits.append(cls(key, name, int(rpm)))
        return tuple(limits)

    def encode(self) -> str:
        return f"{self.key}:{self.name}:{self.requests_per_minute}"


@dataclass(frozen=True)
class RouteAccess:
    """A route's policy, as the edge config hands it to each check."""

    auth: str
    scope: str = ""
    limit_name: str = ""
    requests_per_minute: int = 0  # 0: the key's own limit
    instance_segment: int = -1  # widget routes: which path segment holds the instance id
    prior_limits: tuple[PriorLimit, ...] = ()

    @classmethod
    def from_policy(cls, policy: Mapping[str, str]) -> RouteAccess:
        return cls(
            auth=policy.get("auth", ""),
            scope=policy.get("scope", ""),
            limit_name=policy.get("limit_name", ""),
            requests_per_minute=int(policy.get("requests_per_minute") or 0),
            instance_segment=int(policy.get("instance_segment") or -1),
            prior_limits=PriorLimit.parse_all(policy.get("prior_limits", "")),
        )

    @property
    def surface(self) -> Surface:
        return Surface.SUPPORT if self.auth == SUPPORT_KEY else Surface.CORE


@dataclass
class Admission:
    """The outcome of Check: allowed with identity headers, or an error; rate headers either way."""

    error: HydraError | None = None
    identity: dict[str, str] = field(default_factory=dict)
    rate_headers: dict[str, str] = field(default_factory=dict)


def rate_headers(verdict: Verdict) -> dict[str, str]:
    """X-RateLimit-* (and Retry-After when refused) for a verdict."""
    headers = {"x-ratelimit-limit": str(verdict.limit), "x-ratelimit-remaining": str(verdict.remaining)}
    if not verdict.allowed:
        headers["retry-after"] = str(verdict.retry_after)
    return headers


def credential(headers: Mapping[str, str], auth: str) -> str | None:
    """The credential a request carries for its route's auth mode."""
    if auth == WIDGET_TOKEN:
        return headers.get("x-widget-token") or None
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get("x-api-key") or None


class _Blocked:
    """Client addresses refused for now, each until a time; the oldest forgotten past `size`."""

    def __init__(self, size: int = 100_000) -> None:
        self._until: OrderedDict[str, float] = OrderedDict()
        self._size = size

    def seconds_left(self, client: str, now: float) -> float:
        until = self._until.get(client)
        if until is None:
            return 0.0
        if until <= now:
            del self._until[client]
            return 0.0
        return until - now

    def block(self, client: str, until: float) -> None:
        self._until[client] = until
        self._until.move_to_end(client)
        while len(self._until) > self._size:
            self._until.popitem(last=False)


DEFAULT_INVALID_KEYS_PER_MINUTE = 60


class Authorizer:
    """Decides one request: identify the key, check scope and instance, then rate limit.

    Unknown or revoked keys count against the client's address: past `invalid_keys_per_minute`, its
    requests with keys not already cached are refused (429) without looking them up.
    """

    def __init__(
        self,
        *,
        store: KeyStore,
        limiter: Limiter,
        invalid_keys_per_minute: int = DEFAULT_INVALID_KEYS_PER_MINUTE,
    ) -> None:
        self._store = store
        self._limiter = limiter
        self._invalid_limit = invalid_keys_per_minute
        self._blocked = _Blocked()

    async def admit(
        self, route: RouteAccess, headers: Mapping[str, str], path: str, *, client: str = ""
    ) -> Admission:
        if route.auth not in _KIND_FOR_MODE:
            raise ValueError(f"route has no key-based auth mode: {route.auth!r}")
        secret = credential(headers, route.auth)
        if secret is None:
            return Admission(Unauthenticated(_missing_message(route.auth)))
        kind = keys.kind_of(secret)
        if kind != _KIND_FOR_MODE[route.auth]:
            return Admission(Unauthenticated(_wrong_kind_message(route.auth)))
        blocked = self._blocked.seconds_left(client, time.monotonic())
        record = await self._store.find(secret, load=not blocked)
        if record is None:
            return await self._invalid_key(client, blocked)
        if route.scope and not has_scope(record.scopes, route.scope):
            return Admission(ForbiddenScope(route.scope, record.scopes))
        if route.auth == WIDGET_TOKEN and not _instance_matches(record, path, route.instance_segment):
            return Admission(Unauthenticated("Widget token is not valid for this instance."))
        # In order, each counted only if the ones before allowed the request: a flood from one address
        # spends its own window, never the instance's or the key's that other visitors share.
        verdicts = []
        for prior in route.prior_limits:
            subject = client if prior.key == BY_CLIENT_IP else record.instance_id
            if not subject:
                continue
            verdict = await self._limiter.hit(
                f"{prior.key}:{prior.name}:{subject}", prior.requests_per_minute
            )
            if not verdict.allowed:
                return Admission(RateLimited("Rate limit exceeded"), rate_headers=rate_headers(verdict))
            verdicts.append(verdict)
        limit = route.requests_per_minute or record.rate_limit
        window = (
            f"key:{record.id}" if not route.requests_per_minute else f"key:{record.id}:{route.limit_name}"
        )
        verdict = await self._limiter.hit(window, limit)
        if not verdict.allowed:
            return Admission(
                RateLimited(f"Rate limit exceeded. Limit {limit} requests per minute per API key."),
                rate_headers=rate_headers(verdict),
            )
        tightest = min([verdict, *verdicts], key=lambda v: v.remaining)
        self._store.touch(record)
        identity = {
            "x-hydra-tenant-id": str(record.tenant_id),
            "x-hydra-key-id": str(record.id),
            "x-hydra-scopes": " ".join(sorted(record.scopes)),
        }
        if record.instance_id is not None:
            identity["x-hydra-instance-id"] = str(record.instance_id)
        return Admission(identity=identity, rate_headers=rate_headers(tightest))

    async def _invalid_key(self, client: str, blocked: float) -> Admission:
        """401 for an unknown or revoked key, until the client's address has sent too many: then 429."""
        if blocked:
            verdict = Verdict(False, self._invalid_limit, 0, max(1, math.ceil(blocked)))
        else:
            verdict = await self._limiter.hit(f"invalid-key:{client}", self._invalid_limit)
            if verdict.allowed:
                return Admission(Unauthenticated("Invalid or revoked API key."))
            self._blocked.block(client, time.monotonic() + verdict.retry_after)
        return Admission(
            RateLimited("Too many invalid API keys from this address. Retry later."),
            rate_headers=rate_headers(verdict),
        )


def _missing_message(auth: str) -> str:
    if auth == SUPPORT_KEY:
        return "Missing API key. Send it as 'Authorization: Bearer hmcp_...'."
    if auth == CORE_KEY:
        return "Not authenticated"
    return "Missing widget token (X-Widget-Token)."


def _wrong_kind_message(auth: str) -> str:
    if auth == SUPPORT_KEY:
        return "Malformed API key: this API takes hmcp_ keys."
    if auth == CORE_KEY:
        return "Invalid API key: this API takes hc_live_ keys."
    return "Invalid widget token."


def _instance_matches(record: KeyRecord, path: str, segment: int) -> bool:
    parts = path.split("?", 1)[0].strip("/").split("/")
    return (
        record.instance_id is not None
        and 0 <= segment < len(parts)
        and parts[segment] == str(record.instance_id)
    )
