"""The event hub's use cases: a tenant's webhook endpoints, the events every service sends here (each
recorded once, numbered in the tenant's order, and queued for the endpoints subscribed to its type),
the feed of those events, and the deliveries log with its retry."""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import urllib.parse
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit import AuditLog
from services.common.crud import TenantTable
from services.common.db import Database
from services.common.errors import Conflict, FieldError, NotFound, ValidationError
from services.common.events.catalogue import ALL_TYPES, is_subscription, subscribes
from services.common.events.hub import Announcement
from services.common.fields import parse_limit, utcnow
from services.common.identity import Identity
from services.common.outbound import HostPolicy
from services.common.paging import Cursors
from services.common.resource import Page, ResourceService, page_within
from services.instances import models, repository

WEBHOOK_NOT_FOUND = "Webhook not found"
DELIVERY_NOT_FOUND = "Delivery not found"
MAX_ENDPOINTS = 50  # per tenant: one per integration, with room to spare
SECRET_OVERLAP = dt.timedelta(hours=24)  # a rotated-out secret keeps signing this long
FEED_DEFAULT, FEED_MAXIMUM = 100, 1000


def new_secret() -> str:
    """A signing secret as the Standard Webhooks libraries read it: whsec_ and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _invalid(field: str, message: str) -> ValidationError:
    return ValidationError(FieldError(("body", field), message, "value_error"))


class WebhookService(ResourceService):
    """A tenant's endpoints: their URLs judged like every tenant URL, their secrets made here."""

    resource = "webhook"
    not_found = WEBHOOK_NOT_FOUND

    def __init__(
        self, *, db: Database, table: TenantTable, audit: AuditLog, hosts: HostPolicy, cursors: Cursors
    ) -> None:
        super().__init__(db=db, table=table, audit=audit, cursors=cursors)
        self._hosts = hosts

    async def prepare(self, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        if "url" in fields:
            self._check_url(fields["url"])
        if "event_types" in fields:
            fields["event_types"] = self._event_types(fields["event_types"])
        return {}

    def _check_url(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise _invalid("url", "Input should be a URL without credentials; deliveries are signed instead")
        refusal = self._hosts.refusal(url)
        if refusal is not None:
            raise _invalid("url", refusal)

    @staticmethod
    def _event_types(patterns: list[str]) -> list[str]:
        if not patterns:
            raise _invalid("event_types", 'At least one event type is needed; ["*"] sends every type')
        unknown = [p for p in patterns if not is_subscription(p)]
        if unknown:
            raise _invalid(
                "event_types",
                f"Unknown event types: {', '.join(unknown[:5])}. Use a type such as lead.created, a "
                f'resource\'s types such as lead.*, or "{ALL_TYPES}"',
            )
        return list(dict.fromkeys(patterns))

    def initial_values(self, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        return {
            "description": None,
            **fields,
            "enabled": True,
            "disabled_reason": None,
            "signing_secret": new_secret(),
            "previous_secret": None,
            "previous_secret_expires_at": None,
            "last_success_at": None,
        }

    async def before_create(
        self, conn: AsyncConnection, caller: Identity, fields: dict[str, Any]
    ) -> dict[str, Any]:
        if await self.table.count(conn, tenant_id=caller.tenant_id) >= MAX_ENDPOINTS:
            raise Conflict(
                f"The tenant has {MAX_ENDPOINTS} webhooks; delete one first.", code="too_many_webhooks"
            )
        return fields

    async def before_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], fields: dict[str, Any]
    ) -> dict[str, Any]:
        if fields.get("enabled"):
            return {**fields, "disabled_reason": None}
        return fields

    async def after_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], row: Row[Any], facts: dict[str, Any]
    ) -> None:
        if before.enabled and not row.enabled:
            await repository.fail_pending(conn, row.tenant_id, row.id, "webhook disabled")

    async def rotate(self, caller: Identity, endpoint_id: uuid.UUID) -> Row[Any]:
        """A new signing secret; the one it replaces keeps signing beside it for SECRET_OVERLAP."""
        async with self.transaction() as conn:
            before = await self.table.get(
                conn, tenant_id=caller.tenant_id, row_id=endpoint_id, for_update=True
            )
            if before is None:
                raise NotFound(WEBHOOK_NOT_FOUND)
            now = utcnow()
            row = await self.table.update(
                conn,
                tenant_id=caller.tenant_id,
                row_id=endpoint_id,
                values={
                    "signing_secret": new_secret(),
                    "previous_secret": before.signing_secret,
                    "previous_secret_expires_at": now + SECRET_OVERLAP,
                    "updated_at": now,
                },
            )
            assert row is not None  # locked in this transaction
            await self.audit.record(conn, caller, resource=self.resource, resource_id=row.id, action="rotate")
        return row


@dataclass(frozen=True)
class FeedPage:
    """Events of the feed, where the next page starts, and whether it already has events."""

    rows: Sequence[Row[Any]]
    after: int
    more: bool


class EventHub:
    """Records every service's events and queues their deliveries; lists them as the tenant's feed."""

    def __init__(
        self,
        *,
        db: Database,
        cursors: Cursors,
        queued: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._cursors = cursors
        self._queued = queued  # tells the sender deliveries are due

    async def record(self, tenant_id: uuid.UUID, events: Sequence[Announcement]) -> int:
        """Records the tenant's events not recorded before, with a delivery to each endpoint subscribed to
        its type, in one transaction; returns how many were new."""
        events = list({e.id: e for e in events}.values())
        if not events:
            return 0
        async with self._db.transaction() as conn:
            # Numbers first: the counter's lock also keeps a concurrent sender of the same events waiting
            # until this one committed, so the check below sees them.
            first = await repository.reserve_event_numbers(conn, tenant_id, len(events))
            known = await repository.known_event_ids(conn, tenant_id, [e.id for e in events])
            fresh = [e for e in events if e.id not in known]
            if not fresh:
                return 0
            now = utcnow()
            rows = [
                {
                    "tenant_id": tenant_id,
                    "seq": first + offset,
                    "id": event.id,
                    "type": event.type,
                    "occurred_at": event.occurred_at,
                    "data": json.dumps(event.data, separators=(",", ":")),
                    "recorded_at": now,
                }
                for offset, event in enumerate(fresh)
            ]
            await repository.insert_rows(conn, models.events, rows)
            endpoints = await repository.enabled_endpoints(conn, tenant_id)
            deliveries = [
                new_delivery(tenant_id, endpoint.id, row, now)
                for row in rows
                for endpoint in endpoints
                if subscribes(endpoint.event_types, str(row["type"]))
            ]
            await repository.insert_rows(conn, models.webhook_deliveries, deliveries)
        if deliveries:
            self._queued()
        return len(fresh)

    async def feed(
        self, caller: Identity, *, limit: int | None, cursor: str | None, type: str | None
    ) -> FeedPage:
        """The tenant's events after the one `cursor` names (from the oldest kept without one), in order."""
        after = self._cursors.decode(cursor, [int])[0] if cursor else 0
        count = parse_limit(limit, default=FEED_DEFAULT, maximum=FEED_MAXIMUM)
        prefix = None if type in (None, ALL_TYPES) else type.removesuffix("*")
        async with self._db.read() as conn:
            rows = await repository.feed(
                conn, caller.tenant_id, after=after, limit=count + 1, type_prefix=prefix
            )
        page = rows[:count]
        return FeedPage(page, page[-1].seq if page else after, len(rows) > count)

    def cursor(self, after: int) -> str:
        """A signed cursor to the events numbered after `after`."""
        return self._cursors.encode([after])


def new_delivery(
    tenant_id: uuid.UUID, endpoint_id: uuid.UUID, event: Any, now: dt.datetime
) -> dict[str, Any]:
    """A delivery of an event (a row or its values) to an endpoint, due now."""
    get = event.get if isinstance(event, dict) else event._mapping.get
    return {
        "tenant_id": tenant_id,
        "id": uuid.uuid4(),
        "endpoint_id": endpoint_id,
        "event_seq": get("seq"),
        "event_id": get("id"),
        "event_type": get("type"),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "last_attempt_at": None,
        "response_status": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
    }


class WebhookDeliveries:
    """An endpoint's deliveries log, and sending one's event again."""

    def __init__(
        self,
        *,
        db: Database,
        endpoints: TenantTable,
        deliveries: TenantTable,
        audit: AuditLog,
        cursors: Cursors,
        queued: Callable[[], None] = lambda: None,
    ) -> None:
        self._db = db
        self._endpoints = endpoints
        self._deliveries = deliveries
        self._audit = audit
        self._cursors = cursors
        self._queued = queued

    async def _endpoint(self, conn: AsyncConnection, caller: Identity, endpoint_id: uuid.UUID) -> Row[Any]:
        row = await self._endpoints.get(conn, tenant_id=caller.tenant_id, row_id=endpoint_id)
        if row is None:
            raise NotFound(WEBHOOK_NOT_FOUND)
        return row

    async def list(
        self,
        caller: Identity,
        endpoint_id: uuid.UUID,
        *,
        status: str | None,
        limit: int | None,
        cursor: str | None,
    ) -> Page:
        """The endpoint's deliveries, newest first, of one status when given."""
        filters: dict[str, Any] = {"endpoint_id": endpoint_id}
        if status is not None:
            filters["status"] = status
        async with self._db.read() as conn:
            await self._endpoint(conn, caller, endpoint_id)
            return await page_within(
                conn,
                self._deliveries,
                self._cursors,
                tenant_id=caller.tenant_id,
                count=parse_limit(limit),
                cursor=cursor,
                filters=filters,
            )

    def cursor(self, row: Any) -> str:
        return self._deliveries.cursor(row, self._cursors)

    async def retry(self, caller: Identity, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> Row[Any]:
        """A new delivery of the delivery's event to its endpoint, due now."""
        async with self._db.transaction() as conn:
            endpoint = await self._endpoint(conn, caller, endpoint_id)
            delivery = await self._deliveries.get(
                conn, tenant_id=caller.tenant_id, row_id=delivery_id, scope={"endpoint_id": endpoint_id}
            )
            if delivery is None:
                raise NotFound(DELIVERY_NOT_FOUND)
            if not endpoint.enabled:
                raise Conflict("The webhook is disabled; enable it first.", code="conflict")
            event = await repository.event_at(conn, caller.tenant_id, delivery.event_seq)
            if event is None:
                raise Conflict("The event is no longer kept; retry a newer delivery.", code="conflict")
            values = new_delivery(caller.tenant_id, endpoint_id, event, utcnow())
            row = await self._deliveries.insert(conn, values=values)
            await self._audit.record(
                conn, caller, resource="webhook_delivery", resource_id=row.id, action="retry"
            )
        self._queued()
        return row
