"""Sends queued webhook deliveries: signed per the Standard Webhooks specification, retried with backoff
for about a day, then failed (and an endpoint that got nothing through all that time, disabled).

Deliveries due are claimed a batch at a time (locked, skipping those another sender holds) and leased
while they are tried, so a sender that dies leaves them to another. An endpoint holds at most
`per_endpoint` of a sender's `concurrency` connections and a tenant's endpoints together `per_tenant`,
so one that is slow or down, or a tenant with many, never holds up the others.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import ssl
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from google.protobuf import timestamp_pb2

from services.common import metrics
from services.common.db import Database
from services.common.events.catalogue import ATTEMPT_SECONDS, RETRY_SECONDS
from services.common.fields import aware, utcnow
from services.common.outbound import AddressRefused, HostPolicy, PinnedNetwork, core_url
from services.instances import repository

USER_AGENT = "Hydra-Webhooks/1"
DEFAULT_RETRIES = tuple(dt.timedelta(seconds=s) for s in RETRY_SECONDS)
_ANSWER_BYTES = 64 * 1024  # of an answer's body read at most (and then dropped)


@dataclass(frozen=True)
class SenderSettings:
    """How deliveries are sent and retried."""

    retries: tuple[dt.timedelta, ...] = DEFAULT_RETRIES
    concurrency: int = 32  # attempts in flight in one sender
    per_endpoint: int = 4  # of them, to one endpoint
    per_tenant: int = 16  # of them, to one tenant's endpoints (many failing endpoints of one tenant)
    timeout_seconds: float = ATTEMPT_SECONDS  # one attempt, connecting to reading the answer
    poll_seconds: float = 1.0  # how often due deliveries are looked for while nothing wakes the sender

    @property
    def lease(self) -> dt.timedelta:
        """How long a claimed delivery is held: past any attempt's end."""
        return dt.timedelta(seconds=self.timeout_seconds * 2 + 30)


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """A Standard Webhooks signature: v1, and HMAC-SHA256 of "id.timestamp.body" under the secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def event_body(event_id: uuid.UUID, event_type: str, occurred_at: dt.datetime, data: str) -> bytes:
    """The JSON a delivery POSTs: the event as the events feed lists it."""
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(aware(occurred_at))
    head = json.dumps({"id": str(event_id), "type": event_type, "timestamp": stamp.ToJsonString()})
    return (head[:-1] + ', "data": ' + data + "}").encode()


def _holders(row: Any) -> tuple[tuple[str, uuid.UUID], ...]:
    """What an attempt of this delivery counts against: its endpoint and its tenant."""
    return (("endpoint", row.endpoint_id), ("tenant", row.tenant_id))


@dataclass(frozen=True)
class Outcome:
    """How one attempt went: the answer's status, or why there was none."""

    status: int | None = None
    error: str | None = None
    final: bool = False  # no later attempt could go otherwise

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    """Claims due deliveries and sends them, each endpoint within its share of the connections."""

    def __init__(
        self,
        db: Database,
        *,
        hosts: HostPolicy,
        settings: SenderSettings,
        logger: logging.Logger,
        network: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._log = logger
        self._network = PinnedNetwork(hosts, network, resolvers=settings.concurrency)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=settings.concurrency,
            max_keepalive_connections=settings.concurrency,
            keepalive_expiry=5.0,
            network_backend=self._network,
        )
        # Attempts under way, by ("endpoint", id) and by ("tenant", id).
        self._in_flight: dict[tuple[str, uuid.UUID], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._due = asyncio.Event()

    def wake(self) -> None:
        """Tells the sender deliveries were queued (it looks at once instead of at its next poll)."""
        self._due.set()

    async def run(self) -> None:
        """Sends due deliveries until cancelled; a failure to claim is logged and tried again."""
        try:
            while True:
                self._due.clear()
                try:
                    claimed = await self.send_due()
                except Exception as error:
                    self._log.warning(
                        "claiming webhook deliveries failed", extra={"error": type(error).__name__}
                    )
                    claimed = 0
                if not claimed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._due.wait(), self._settings.poll_seconds)
        finally:
            for task in self._tasks:
                task.cancel()

    async def send_due(self) -> int:
        """Claims the deliveries due now that fit the free connections and starts their attempts."""
        free = self._settings.concurrency - len(self._tasks)
        if free <= 0:
            return 0
        now = utcnow()
        chosen = []
        taking = dict(self._in_flight)
        async with self._db.transaction() as conn:
            due = await repository.claim_due(
                conn,
                now=now,
                limit=free * 4,
                # Left out in the query, not after it: a backlog of theirs must not fill every batch.
                busy_endpoints=self._busy("endpoint", self._settings.per_endpoint),
                busy_tenants=self._busy("tenant", self._settings.per_tenant),
            )
            for row in due:
                if (
                    taking.get(("endpoint", row.endpoint_id), 0) >= self._settings.per_endpoint
                    or taking.get(("tenant", row.tenant_id), 0) >= self._settings.per_tenant
                ):
                    continue  # left unlocked for a later round, or another sender
                for holder in _holders(row):
                    taking[holder] = taking.get(holder, 0) + 1
                chosen.append(row)
                if len(chosen) == free:
                    break
            await repository.hold(conn, [(r.tenant_id, r.id) for r in chosen], now + self._settings.lease)
        for row in chosen:
            for holder in _holders(row):
                self._in_flight[holder] = self._in_flight.get(holder, 0) + 1
            task = asyncio.create_task(self._attempt(row))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(chosen)

    def _busy(self, kind: str, cap: int) -> list[uuid.UUID]:
        """The endpoints (or tenants) with as many attempts under way as they may have."""
        return [key for (of, key), count in self._in_flight.items() if of == kind and count >= cap]

    async def drain(self) -> None:
        """Waits for the attempts under way (tests, and a clean stop)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _attempt(self, row: Any) -> None:
        try:
            started = time.perf_counter()
            outcome = await self._send(row)
            label = "delivered" if outcome.delivered else "failed"
            metrics.WEBHOOK_ATTEMPTS.labels(label).observe(time.perf_counter() - started)
            await self._settle(row, outcome)
        except Exception as error:  # the lease runs out and the delivery is tried again
            self._log.warning("settling a webhook delivery failed", extra={"error": type(error).__name__})
        finally:
            for holder in _holders(row):
                left = self._in_flight.get(holder, 1) - 1
                if left:
                    self._in_flight[holder] = left
                else:
                    self._in_flight.pop(holder, None)
            self._due.set()

    async def _send(self, row: Any) -> Outcome:
        if row.event_id is None:
            return Outcome(error="event no longer kept", final=True)
        if not row.enabled:
            return Outcome(error="webhook disabled", final=True)
        url = core_url(row.url)
        if url is None:
            return Outcome(error="unusable URL", final=True)
        body = event_body(row.event_id, row.event_type, row.occurred_at, row.data)
        timestamp = int(time.time())
        signatures = [sign(row.signing_secret, str(row.event_id), timestamp, body)]
        expires = row.previous_secret_expires_at
        if row.previous_secret and expires is not None and aware(expires) > utcnow():
            signatures.append(sign(row.previous_secret, str(row.event_id), timestamp, body))
        headers = [
            (b"Content-Type", b"application/json"),
            (b"User-Agent", USER_AGENT.encode()),
            (b"webhook-id", str(row.event_id).encode()),
            (b"webhook-timestamp", str(timestamp).encode()),
            (b"webhook-signature", " ".join(signatures).encode()),
        ]
        seconds = self._settings.timeout_seconds
        timeouts = {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}
        try:
            async with asyncio.timeout(seconds):
                async with self._pool.stream(
                    "POST", url, headers=headers, content=body, extensions={"timeout": timeouts}
                ) as response:
                    read = 0
                    async for chunk in response.aiter_stream():
                        read += len(chunk)
                        if read > _ANSWER_BYTES:
                            break
                    status = response.status
        except AddressRefused:
            return Outcome(error="address not allowed")
        except (TimeoutError, httpcore.TimeoutException):
            return Outcome(error="timed out")
        except httpcore.ConnectError:
            return Outcome(error="connection failed")
        except (
            httpcore.NetworkError,
            httpcore.ProtocolError,
            httpcore.UnsupportedProtocol,
            ssl.SSLError,
        ) as error:
            return Outcome(error=f"no answer ({type(error).__name__})")
        if 200 <= status < 300:
            return Outcome(status=status)
        return Outcome(status=status, error=f"HTTP {status}")

    async def _settle(self, row: Any, outcome: Outcome) -> None:
        """Records the attempt: done, or due again after the next wait, or out of attempts."""
        now = utcnow()
        attempts = row.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_attempt_at": now,
            "response_status": outcome.status,
            "last_error": outcome.error,
            "updated_at": now,
        }
        retries = self._settings.retries
        if outcome.delivered:
            values.update(status="succeeded", next_attempt_at=None)
        elif outcome.final or attempts > len(retries):
            values.update(status="failed", next_attempt_at=None)
        else:
            wait = retries[attempts - 1]
            jitter = wait.total_seconds() * 0.1 * random.random()
            values.update(next_attempt_at=now + wait + dt.timedelta(seconds=jitter))
        async with self._db.transaction() as conn:
            await repository.settle(conn, row.tenant_id, row.id, values)
            if outcome.delivered:
                await repository.update_endpoint(
                    conn, row.tenant_id, row.endpoint_id, {"last_success_at": now}
                )
            elif values.get("status") == "failed" and not outcome.final and self._failing_since(row):
                reason = (
                    f"Every delivery since {aware(row.created_at).isoformat()} failed; "
                    f"the last: {outcome.error}"
                )
                await repository.update_endpoint(
                    conn,
                    row.tenant_id,
                    row.endpoint_id,
                    {"enabled": False, "disabled_reason": reason[:500], "updated_at": now},
                )
                await repository.fail_pending(conn, row.tenant_id, row.endpoint_id, "webhook disabled")

    @staticmethod
    def _failing_since(row: Any) -> bool:
        """Whether nothing reached the endpoint since this delivery, out of attempts now, was queued."""
        return row.last_success_at is None or aware(row.last_success_at) < aware(row.created_at)

    async def close(self) -> None:
        await self._pool.aclose()
        self._network.close()
