"""Live keys found by their secret, cached briefly: revocation shows within the cache time."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from edge.gatekeeper import keys, repository
from services.common import metrics
from services.common.db import Database
from services.common.fields import aware, utcnow

_TOUCH_INTERVAL = 60.0  # seconds between last_used_at writes for one key


@dataclass(frozen=True)
class KeyRecord:
    """What the edge needs to know about a live key."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    kind: str
    scopes: frozenset[str]
    rate_limit: int
    instance_id: uuid.UUID | None
    expires_at: dt.datetime | None = None

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


_HITS, _MISSES = metrics.KEY_CACHE.labels("hit"), metrics.KEY_CACHE.labels("miss")


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
            _HITS.inc()
            return None if hit[1] is not None and hit[1].expired(utcnow()) else hit[1]
        _MISSES.inc()
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
                expires_at=aware(row.expires_at),
            )
            if record.expired(utcnow()):
                record = None
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
