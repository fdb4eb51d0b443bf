"""public use cases: sites, page-view tracking, form submissions; each write is one transaction."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit import AuditLog
from services.common.batching import GroupCommitWriter, RowRejected
from services.common.db import Database
from services.common.errors import NotFound
from services.common.events.bus import Event
from services.common.events.catalogue import announcement
from services.common.events.outbox import Outbox
from services.common.fields import parse_limit, utcnow
from services.common.identity import Identity
from services.common.paging import UNSIGNED, Cursors
from services.common.resource import Page, ResourceService, View, page_within
from services.public import repository
from services.public.crm import CrmConversations

SITE_NOT_FOUND = "Site not found"
FORM_SUBMITTED = "form.submitted"
SUMMARY_DEFAULT_DAYS = 30
SUMMARY_MAX_DAYS = 365
# Form fields copied onto the crm lead, with crm's length limits; anything longer is left out.
LEAD_DETAILS = {"name": 200, "phone": 50, "company": 200}


@dataclass(frozen=True)
class SiteRef:
    """Which tenant a public request's site belongs to."""

    tenant_id: uuid.UUID
    site_id: uuid.UUID
    tracking_token: uuid.UUID


def public_caller(tenant_id: uuid.UUID, surface: str) -> Identity:
    """The identity audited for a write made by an anonymous website visitor."""
    return Identity(tenant_id=tenant_id, key_id=f"public:{surface}", scopes=frozenset())


class SiteDirectory:
    """Resolves the ids public requests carry to a site; tracking tokens are cached briefly."""

    def __init__(self, *, db: Database, ttl: float, max_entries: int = 100_000) -> None:
        self._db = db
        self._ttl = ttl
        self._max = max_entries
        self._by_token: dict[uuid.UUID, tuple[float, SiteRef | None]] = {}

    async def by_tracking_token(self, token: uuid.UUID) -> SiteRef | None:
        now = time.monotonic()
        hit = self._by_token.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        site = await self._find(tracking_token=token)
        if len(self._by_token) >= self._max:
            self._by_token.clear()
        self._by_token[token] = (now + self._ttl, site)
        return site

    async def by_config_id(self, site_id: uuid.UUID) -> SiteRef | None:
        return await self._find(id=site_id)

    async def _find(self, **unique: uuid.UUID) -> SiteRef | None:
        async with self._db.read() as conn:
            row = await repository.find_site(conn, **unique)
        return None if row is None else SiteRef(row.tenant_id, row.id, row.tracking_token)

    def forget(self, token: uuid.UUID) -> None:
        """Drops a deleted site's token from this process's cache."""
        self._by_token.pop(token, None)


class SiteService(ResourceService):
    """Sites: a new site gets its tracking token; deleting one takes its page views and submissions."""

    resource = "site"
    not_found = SITE_NOT_FOUND
    list_default = list_maximum = 1000  # HydraCore lists return every row in scope

    def __init__(
        self, *, db: Database, audit: AuditLog, directory: SiteDirectory, cursors: Cursors = UNSIGNED
    ) -> None:
        super().__init__(db=db, table=repository.sites, audit=audit, cursors=cursors)
        self._directory = directory

    def initial_values(self, caller: Identity, fields: dict[str, Any]) -> dict[str, Any]:
        return {"domain": None, **fields, "tracking_token": uuid.uuid4()}

    async def before_delete(self, conn: AsyncConnection, caller: Identity, row: Row[Any]) -> None:
        self._directory.forget(row.tracking_token)


class Analytics:
    """Page views: recorded from websites in group-committed batches, summarised for the tenant."""

    def __init__(
        self, *, db: Database, sites: SiteDirectory, writer: GroupCommitWriter[Mapping[str, Any]]
    ) -> None:
        self._db = db
        self._sites = sites
        self._writer = writer

    async def track(self, fields: Mapping[str, Any]) -> None:
        """Stores one page view; returns once it is committed."""
        site = await self._sites.by_tracking_token(fields["site_id"])
        if site is None:
            raise NotFound(SITE_NOT_FOUND)
        row = {
            "tenant_id": site.tenant_id,
            "id": uuid.uuid4(),
            "site_id": site.site_id,
            "page_path": fields["page_path"],
            "device_type": fields.get("device_type"),
            "referrer": fields.get("referrer"),
            "screen_width": fields.get("screen_width"),
            "session_id": fields.get("session_id"),
            "viewed_at": utcnow(),
        }
        try:
            await self._writer.write(row)
        except RowRejected:
            self._sites.forget(site.tracking_token)  # the site was deleted meanwhile
            raise NotFound(SITE_NOT_FOUND) from None

    async def summary(self, caller: Identity, site_id: uuid.UUID, *, days: int | None) -> dict[str, Any]:
        """Page views of one of the caller's sites over the last `days` UTC days (today included)."""
        window = parse_limit(days, default=SUMMARY_DEFAULT_DAYS, maximum=SUMMARY_MAX_DAYS, name="days")
        today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        since = today - dt.timedelta(days=window - 1)
        async with self._db.read() as conn:
            if await repository.sites.get(conn, tenant_id=caller.tenant_id, row_id=site_id) is None:
                raise NotFound(SITE_NOT_FOUND)
            figures = await repository.page_view_summary(
                conn, tenant_id=caller.tenant_id, site_id=site_id, since=since
            )
        return {"site_id": str(site_id), "days": window, **figures}


class Forms:
    """Form submissions: stored with an outbox event; a consumer turns their email into a crm lead."""

    def __init__(
        self,
        *,
        db: Database,
        sites: SiteDirectory,
        audit: AuditLog,
        outbox: Outbox,
        crm: CrmConversations,
        cursors: Cursors = UNSIGNED,
        announce: View | None = None,
    ) -> None:
        self._db = db
        self._cursors = cursors
        self._sites = sites
        self._audit = audit
        self._outbox = outbox
        self._crm = crm
        self._announce = announce  # with a view, each submission is announced as form_submission.created

    async def submit(self, fields: Mapping[str, Any]) -> uuid.UUID:
        """Stores a submission of the site whose config id it names; returns the submission id."""
        site = await self._sites.by_config_id(fields["site_id"])
        if site is None:
            raise NotFound(SITE_NOT_FOUND)
        submission_id = uuid.uuid4()
        email = fields.get("email")
        async with self._db.transaction() as conn:
            row = await repository.form_submissions.insert(
                conn,
                values={
                    "tenant_id": site.tenant_id,
                    "id": submission_id,
                    "site_id": site.site_id,
                    "form_data": fields["form_data"],
                    "email": email,
                    "page_slug": fields.get("page_slug"),
                    "created_at": utcnow(),
                },
            )
            if email:
                await self._outbox.record(
                    conn,
                    tenant_id=site.tenant_id,
                    topic=FORM_SUBMITTED,
                    payload={
                        "submission_id": str(submission_id),
                        "email": email,
                        "details": lead_details(fields["form_data"]),
                    },
                )
            if self._announce is not None:
                await self._outbox.record(
                    conn,
                    tenant_id=site.tenant_id,
                    topic="form_submission.created",
                    payload=announcement(self._announce(row)),
                )
            await self._audit.record(
                conn,
                public_caller(site.tenant_id, "forms"),
                resource="form_submission",
                resource_id=submission_id,
                action="create",
            )
        return submission_id

    async def list(
        self,
        caller: Identity,
        site_id: uuid.UUID,
        *,
        limit: int | None,
        cursor: str | None = None,
        since: Mapping[str, Any] | None = None,
    ) -> Page:
        """The newest submissions of one of the caller's sites (after the one `cursor` names; at or after
        every `since` moment)."""
        async with self._db.read() as conn:
            if await repository.sites.get(conn, tenant_id=caller.tenant_id, row_id=site_id) is None:
                raise NotFound(SITE_NOT_FOUND)
            return await page_within(
                conn,
                repository.form_submissions,
                self._cursors,
                tenant_id=caller.tenant_id,
                count=parse_limit(limit),
                cursor=cursor,
                filters={"site_id": site_id},
                since=since,
            )

    def cursor(self, row: Any) -> str:
        """A cursor to the submissions after `row`."""
        return repository.form_submissions.cursor(row, self._cursors)

    async def capture_lead(self, conn: AsyncConnection, event: Event) -> None:
        """Consumer of form.submitted: creates or finds the lead in crm, then links the submission to it."""
        tenant_id = uuid.UUID(event.tenant_id)
        lead = await self._crm.capture_lead(
            tenant_id, email=event.payload["email"], details=event.payload["details"]
        )
        await repository.set_submission_lead(
            conn,
            tenant_id=tenant_id,
            submission_id=uuid.UUID(event.payload["submission_id"]),
            lead_id=uuid.UUID(lead.id),
        )


def lead_details(form_data: Mapping[str, Any]) -> dict[str, str]:
    """The lead fields a form carries (name, phone, company) that crm will accept: one line each, within
    crm's length limits (a form's values may span lines; a lead's name may not)."""
    details = {}
    for name, most in LEAD_DETAILS.items():
        value = _one_line(form_data.get(name))
        if 0 < len(value) <= most:
            details[name] = value
    if "name" not in details:
        joined = " ".join(p for p in (_one_line(form_data.get(k)) for k in ("first_name", "last_name")) if p)
        if 0 < len(joined) <= LEAD_DETAILS["name"]:
            details["name"] = joined
    return details


def _one_line(value: Any) -> str:
    """A form value as one line of text ("" for anything else)."""
    return " ".join(value.split()) if isinstance(value, str) else ""
