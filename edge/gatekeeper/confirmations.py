"""Previewed writes waiting for confirmation: a token bound to the key, the exact arguments and the row's
version, valid for a few minutes, redeemed at most once."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update

from edge.gatekeeper.models import tool_confirmations
from services.common.db import Database
from services.common.fields import utcnow

TOKEN_PREFIX = "hconf_"
CONFIRMATIONS_PURGE_SECONDS = 600.0  # a token lives minutes: its row goes within ten more


class Refused(Exception):
    """A confirmation that cannot be applied; the message says why and that a new preview is needed."""


@dataclass(frozen=True)
class Pending:
    """What a redeemed token confirms."""

    tool: str
    arguments: dict[str, Any]
    version: str | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Confirmations:
    """Tokens for previewed writes, in the gatekeeper's database (so any replica redeems them)."""

    def __init__(self, db: Database, *, valid_for: dt.timedelta = dt.timedelta(minutes=5)) -> None:
        self._db = db
        self.valid_for = valid_for

    async def issue(self, key_id: str, tool: str, arguments: dict[str, Any], version: str | None) -> str:
        token = TOKEN_PREFIX + secrets.token_urlsafe(24)
        async with self._db.transaction() as conn:
            await conn.execute(
                insert(tool_confirmations).values(
                    token_hash=_digest(token),
                    key_id=key_id,
                    tool=tool,
                    arguments=arguments,
                    version=version,
                    expires_at=utcnow() + self.valid_for,
                    used_at=None,
                )
            )
        return token

    async def redeem(self, token: str, key_id: str) -> Pending:
        """The write `token` confirms, marked used (Refused if unknown, another key's, used or expired)."""
        now = utcnow()
        async with self._db.transaction() as conn:
            row = (
                await conn.execute(
                    select(tool_confirmations).where(tool_confirmations.c.token_hash == _digest(token))
                )
            ).first()
            if row is None or row.key_id != key_id:
                raise Refused("Unknown confirmation token: preview the change again.")
            expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=dt.UTC)
            if row.used_at is not None:
                raise Refused("This confirmation was already used: preview the change again.")
            if expires <= now:
                raise Refused("This confirmation expired: preview the change again.")
            used = await conn.execute(
                update(tool_confirmations)
                .where(
                    tool_confirmations.c.token_hash == row.token_hash, tool_confirmations.c.used_at.is_(None)
                )
                .values(used_at=now, arguments={})  # what was confirmed need not be kept
            )
            if not used.rowcount:  # another request redeemed it a moment ago
                raise Refused("This confirmation was already used: preview the change again.")
        return Pending(row.tool, dict(row.arguments), row.version)

    async def purge(self) -> int:
        """Deletes expired tokens (the arguments of writes never confirmed go with them); how many."""
        async with self._db.transaction() as conn:
            gone = await conn.execute(
                delete(tool_confirmations).where(tool_confirmations.c.expires_at < utcnow())
            )
        return int(gone.rowcount or 0)
