"""Idempotency-Key on writes: a request sent again with the key of one before it is answered with that
first answer (its status, body and headers) for a day, and runs once however often, or however
concurrently, it is sent. Each service keeps the keys in its own database, so every replica sees them.

A key belongs to the caller (a tenant, or a user) and to one request: the same key with another request
(another route, path or body) is refused. An answer is kept once the request ran to an answer of its
own; an answer that says nothing was done, or that it may have been (the database lost, the deadline
passed), releases the key, so the retry runs. A request whose process dies before it answers holds its
key for a lease, then the key is taken over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    delete,
    null,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from services.common.db import Database
from services.common.errors import Conflict, FieldError, HydraError, Unavailable, ValidationError
from services.common.fields import aware, utcnow

IDEMPOTENCY_KEY = "idempotency-key"
REPLAYED = "idempotent-replayed"  # on a replayed answer: "true"
KEPT_FOR = dt.timedelta(hours=24)
# How long a claim outlives a request that never answered (its process died): longer than any deadline.
LEASE = dt.timedelta(seconds=90)
PURGE_SECONDS = 600.0
MAX_KEY_CHARS = 255
_POLL_SECONDS = (0.01, 0.02, 0.05, 0.1, 0.2)  # while another request with the key runs
_LONGEST_WAIT = 10.0  # for a caller that set no deadline
# Answers that say the request ran: kept and replayed. Others release the key (nothing was done, or
# what was done is not known: the retry runs again).
_KEPT_CODES = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


def idempotency_table(metadata: MetaData) -> Table:
    """idempotency_keys: each caller's keys, the request each one names, and its answer once known."""
    return Table(
        "idempotency_keys",
        metadata,
        Column("principal", String(64), primary_key=True),  # a tenant's UUID, or "user:<id>"
        Column("key", String(MAX_KEY_CHARS), primary_key=True),
        Column("fingerprint", String(64), nullable=False),  # the method and request, digested
        Column("claimed_at", DateTime(timezone=True), nullable=False),
        Column("answered_at", DateTime(timezone=True)),  # null while the request runs
        Column("status", Integer),  # the gRPC status code of the answer
        Column("message", Text),  # an error's status message
        Column("body", LargeBinary),  # a success's response message, serialized
        Column("headers", Text),  # JSON pairs: a success's answer headers, or an error's trailers
        Index(None, "claimed_at"),  # the purge finds the old keys through it
    )


class IdempotencyKeyReused(HydraError):
    """The key was first sent with another request."""

    code = "idempotency_key_reused"
    grpc_status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 422


_REUSED = (
    "This Idempotency-Key was used with another request (route, path or body) in the last 24 hours; "
    "use a new key for a new request."
)
_IN_USE = "A request with this Idempotency-Key is still running; retry after it answers."
_UNREADABLE = "This Idempotency-Key's answer was kept under another key; retry with a new Idempotency-Key."
# What a sealed body starts with: no serialized message does (field number 0 does not exist).
_SEALED = b"\x01"


@dataclass(frozen=True)
class Answer:
    """What a request was answered: its status, and its response or its error's message and trailers."""

    status: grpc.StatusCode
    body: bytes = b""
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def kept(self) -> bool:
        return self.status in _KEPT_CODES


def read_key(metadata: dict[str, str]) -> str | None:
    """The request's Idempotency-Key, or None; refuses one that is empty, too long, or not visible ASCII."""
    key = metadata.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    if not 0 < len(key) <= MAX_KEY_CHARS or not all("!" <= ch <= "~" for ch in key):
        raise ValidationError(
            FieldError(
                ("header", "Idempotency-Key"),
                f"Should be 1 to {MAX_KEY_CHARS} visible ASCII characters (a UUID is a good key)",
                "value_error",
            )
        )
    return key


def fingerprint(method: str, request: bytes) -> str:
    """A digest naming one request: its method and its message (path, query and body)."""
    digest = hashlib.blake2b(method.encode(), digest_size=24)
    digest.update(b"\0")
    digest.update(request)
    return digest.hexdigest()


class IdempotencyKeys:
    """The keys of one service's callers, in its database (psycopg directly on PostgreSQL: two
    statements per keyed write, each committing on its own)."""

    def __init__(self, db: Database, table: Table, *, sealing_key: bytes = b"") -> None:
        self._db = db
        self._table = table
        # Kept answers are sealed (AES-GCM): some carry a secret shown once, such as a new key's, which
        # the database must not hold in clear. Without a key (tests building it by hand) they are not.
        self._seal = AESGCM(sealing_key) if sealing_key else None
        t = table
        dialect_insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
        this_key = (t.c.principal == bindparam("the_principal"), t.c.key == bindparam("the_key"))
        self._claim = (
            dialect_insert(t)
            .values(
                principal=bindparam("the_principal"),
                key=bindparam("the_key"),
                fingerprint=bindparam("new_fingerprint"),
                claimed_at=bindparam("now"),
            )
            .on_conflict_do_nothing()
            .returning(t.c.key)
        )
        self._read = select(t).where(*this_key)
        self._answer = (
            update(t)
            .where(*this_key, t.c.answered_at.is_(None))
            .values(
                answered_at=bindparam("now"),
                status=bindparam("new_status"),
                message=bindparam("new_message"),
                body=bindparam("new_body"),
                headers=bindparam("new_headers"),
            )
        )
        self._release = delete(t).where(*this_key, t.c.answered_at.is_(None))
        self._take_over = (
            update(t)
            .where(*this_key, t.c.claimed_at == bindparam("then"))
            .values(
                fingerprint=bindparam("new_fingerprint"),
                claimed_at=bindparam("now"),
                **{name: null() for name in ("answered_at", "status", "message", "body", "headers")},
            )
        )

    async def claim(
        self, principal: str, key: str, print_: str, *, wait_until: float | None = None
    ) -> Answer | None:
        """None when the request is the key's to run now; its first answer when it ran before. Waits
        (until the loop time `wait_until`) while another request with the key runs, then refuses (409)."""
        loop = asyncio.get_running_loop()
        until = wait_until if wait_until is not None else loop.time() + _LONGEST_WAIT
        for attempt in itertools.count():
            found = await self._claim_or_read(principal, key, print_)
            if found is None:
                return None
            if found.fingerprint != print_:
                raise IdempotencyKeyReused(_REUSED)
            if found.answered_at is not None:
                return self._opened(found, principal, key)
            pause = _POLL_SECONDS[min(attempt, len(_POLL_SECONDS) - 1)]
            if loop.time() + pause >= until:
                break
            await asyncio.sleep(pause)
        raise Conflict(_IN_USE, code="idempotency_key_in_use")

    async def _claim_or_read(self, principal: str, key: str, print_: str) -> Any | None:
        """Claims the key (None), or reads the request that holds it; a key past its day, or a claim
        past its lease, is taken over."""
        now = utcnow()
        params = {"the_principal": principal, "the_key": key, "new_fingerprint": print_, "now": now}
        async with self._db.direct() as conn:
            if await conn.fetch(self._claim, params):
                return None
            rows = await conn.fetch(self._read, params)
            if not rows:  # purged in between: claimed on the next round
                return _Unclaimed(print_)
            found = rows[0]
            claimed_at = aware(found.claimed_at)
            stale = claimed_at < now - (KEPT_FOR if found.answered_at is not None else LEASE)
            if not stale:
                return found
            taken = await conn.execute(self._take_over, {**params, "then": found.claimed_at})
            return None if taken else _Unclaimed(print_)

    async def keep(self, principal: str, key: str, answer: Answer) -> None:
        """Records the answer of the request that holds the key (or releases the key, for an answer that
        is not kept)."""
        params: dict[str, Any] = {"the_principal": principal, "the_key": key}
        async with self._db.direct() as conn:
            if not answer.kept:
                await conn.execute(self._release, params)
                return
            params.update(
                now=utcnow(),
                new_status=answer.status.value[0],
                new_message=answer.message,
                new_body=self._sealed(answer.body, principal, key),
                new_headers=json.dumps(answer.headers),
            )
            await conn.execute(self._answer, params)

    def _sealed(self, body: bytes, principal: str, key: str) -> bytes:
        """The body as it is kept: sealed under the process's key, bound to its principal and key."""
        if self._seal is None or not body:
            return body
        nonce = os.urandom(12)
        return _SEALED + nonce + self._seal.encrypt(nonce, body, f"{principal} {key}".encode())

    def _opened(self, row: Any, principal: str, key: str) -> Answer:
        answer = _answer(row)
        if not answer.body.startswith(_SEALED):
            return answer
        sealed = answer.body[len(_SEALED) :]
        try:
            if self._seal is None:
                raise InvalidTag
            body = self._seal.decrypt(sealed[:12], sealed[12:], f"{principal} {key}".encode())
        except InvalidTag:  # sealed under another key: the shared secret changed since
            raise Unavailable(_UNREADABLE) from None
        return dataclasses.replace(answer, body=body)

    async def purge(self) -> None:
        """Forgets the keys past their day."""
        t = self._table
        async with self._db.transaction() as conn:
            await conn.execute(delete(t).where(t.c.claimed_at < utcnow() - KEPT_FOR))


@dataclass(frozen=True)
class _Unclaimed:
    """A key that was free a moment ago, though not claimed by this round: the next one tries again."""

    fingerprint: str
    answered_at: None = None


_STATUS_BY_CODE = {code.value[0]: code for code in grpc.StatusCode}


def _answer(row: Any) -> Answer:
    pairs: Sequence[Sequence[str]] = json.loads(row.headers or "[]")
    return Answer(
        status=_STATUS_BY_CODE[row.status or 0],
        body=row.body or b"",
        message=row.message or "",
        headers=tuple((name, value) for name, value in pairs),
    )
