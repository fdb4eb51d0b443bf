"""Users' memberships of tenants and the scopes each role opens; the current one cached briefly, so a
membership removed or switched shows within the cache time."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from edge.gatekeeper.models import memberships, tenants
from services.common.db import Database
from services.common.errors import NotFound
from services.common.fields import utcnow

ROLES = ("admin", "member", "viewer")


def role_scopes(scopes: Iterable[str]) -> dict[str, frozenset[str]]:
    """The scopes of each role, from every scope the platform's routes require: admin opens all,
    member all but deletes, viewer reads only."""
    every = frozenset(scopes)
    return {
        "admin": every,
        "member": frozenset(s for s in every if not s.endswith(":delete")),
        "viewer": frozenset(s for s in every if s.endswith(":read")),
    }


@dataclass(frozen=True)
class Member:
    """A user's membership: the tenant, its name, the role and its scopes, and whether it is current."""

    tenant_id: uuid.UUID
    name: str
    role: str
    scopes: frozenset[str]
    current: bool


class Memberships:
    """Memberships in the gatekeeper's database."""

    def __init__(self, *, db: Database, scopes: Iterable[str], ttl: float, size: int = 100_000) -> None:
        self._db = db
        self._roles = role_scopes(scopes)
        self._ttl = ttl
        self._size = size
        self._current: OrderedDict[uuid.UUID, tuple[float, Member | None]] = OrderedDict()

    async def of(self, user_id: uuid.UUID) -> list[Member]:
        """The user's memberships, oldest first; the current one is the last selected, else the oldest."""
        query = (
            select(memberships, tenants.c.name)
            .join(tenants, tenants.c.id == memberships.c.tenant_id)
            .where(memberships.c.user_id == user_id)
            .order_by(memberships.c.created_at, memberships.c.tenant_id)
        )
        async with self._db.read() as conn:
            rows: Sequence[Any] = (await conn.execute(query)).all()
        chosen = max(
            rows, key=lambda r: (r.selected_at is not None, r.selected_at or r.created_at), default=None
        )
        if chosen is not None and chosen.selected_at is None:
            chosen = rows[0]
        return [Member(r.tenant_id, r.name, r.role, self._roles[r.role], r is chosen) for r in rows]

    async def current(self, user_id: uuid.UUID) -> Member | None:
        """The tenant the user's requests act in now (cached for the ttl), or None without one."""
        now = time.monotonic()
        cached = self._current.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        member = next((m for m in await self.of(user_id) if m.current), None)
        self._current[user_id] = (now + self._ttl, member)
        self._current.move_to_end(user_id)
        while len(self._current) > self._size:
            self._current.popitem(last=False)
        return member

    async def switch(self, user_id: uuid.UUID, tenant_id: uuid.UUID) -> Member:
        """Makes `tenant_id` the user's current tenant; NotFound unless they belong to it."""
        async with self._db.transaction() as conn:
            changed = await conn.execute(
                update(memberships)
                .where(memberships.c.user_id == user_id, memberships.c.tenant_id == tenant_id)
                .values(selected_at=utcnow())
            )
            if not changed.rowcount:
                raise NotFound("You are not a member of this tenant")
        self._current.pop(user_id, None)
        return next(m for m in await self.of(user_id) if m.tenant_id == tenant_id)

    async def add(self, user_id: uuid.UUID, tenant_id: uuid.UUID, role: str) -> None:
        """Makes the user a member of the tenant with `role` (or gives an existing member that role)."""
        async with self._db.transaction() as conn:
            tenant = await conn.execute(select(func.count()).where(tenants.c.id == tenant_id))
            if not tenant.scalar_one():
                raise NotFound("Tenant not found")
            changed = await conn.execute(
                update(memberships)
                .where(memberships.c.user_id == user_id, memberships.c.tenant_id == tenant_id)
                .values(role=role)
            )
            if not changed.rowcount:
                await conn.execute(
                    memberships.insert().values(
                        user_id=user_id, tenant_id=tenant_id, role=role, created_at=utcnow(), selected_at=None
                    )
                )
        self._current.pop(user_id, None)
