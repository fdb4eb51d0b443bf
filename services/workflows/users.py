"""Users: found or made from a verified ID token, their profile with counts, and account deletion."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.common.db import Database
from services.common.errors import NotFound
from services.common.fields import utcnow
from services.common.plans import DEFAULT_PLAN
from services.workflows import repository
from services.workflows.billing import Billing, billing_records
from services.workflows.models import (
    deployment_workflows,
    deployments,
    library_entries,
    workflow_versions,
    workflows,
)

# The subject of a user of the platform's own issuer (hydractl users create).
LOCAL_SUBJECT_PREFIX = "hydra|"
USER_NOT_FOUND = "User not found"


@dataclass(frozen=True)
class Deletion:
    """What an account deletion removed."""

    user_id: uuid.UUID
    deleted_at: dt.datetime
    stats: dict[str, int]


class UserService:
    """The signed-in user's profile and account."""

    def __init__(self, db: Database, billing: Billing) -> None:
        self._db = db
        self._billing = billing

    async def resolve(self, subject: str, email: str) -> Any:
        """The user with this subject, made on first sight; its email follows the newest token."""
        async with self._db.transaction() as conn:
            found = await repository.user_by_subject(conn, subject)
            if found is not None:
                if email and found.email != email:
                    await repository.update_user(conn, found.id, {"email": email, "updated_at": utcnow()})
                    found = await repository.user(conn, found.id)
                return found
        try:
            return await self._insert(subject, email)
        except IntegrityError:  # another request made it first
            async with self._db.read() as conn:
                return await repository.user_by_subject(conn, subject)

    async def create_local(self, email: str) -> Any:
        """A user of the platform's own issuer with this email, made unless one exists."""
        async with self._db.read() as conn:
            found = await repository.user_by_email(conn, email)
        if found is not None and found.subject.startswith(LOCAL_SUBJECT_PREFIX):
            return found
        return await self._insert(f"{LOCAL_SUBJECT_PREFIX}{uuid.uuid4()}", email)

    async def _insert(self, subject: str, email: str) -> Any:
        now = utcnow()
        user_id = uuid.uuid4()
        values = {
            "id": user_id,
            "subject": subject,
            "email": email,
            "plan": DEFAULT_PLAN,
            "created_at": now,
            "updated_at": now,
        }
        async with self._db.transaction() as conn:
            await repository.insert_user(conn, values)
            return await repository.user(conn, user_id)

    async def find(self, email: str) -> Any:
        async with self._db.read() as conn:
            found = await repository.user_by_email(conn, email)
        if found is None:
            raise NotFound(USER_NOT_FOUND)
        return found

    async def set_plan(self, email: str, plan: str) -> Any:
        async with self._db.transaction() as conn:
            found = await repository.user_by_email(conn, email)
            if found is None:
                raise NotFound(USER_NOT_FOUND)
            await repository.update_user(conn, found.id, {"plan": plan, "updated_at": utcnow()})
            return await repository.user(conn, found.id)

    async def me(self, user_id: uuid.UUID) -> tuple[Any, dict[str, int]]:
        """The user and the counts of what they own and subscribe to."""
        async with self._db.read() as conn:
            found = await repository.user(conn, user_id)
            if found is None:
                raise NotFound(USER_NOT_FOUND)
            counts = {
                "workflow_count": await repository.count(
                    conn, select(workflows.c.id).where(workflows.c.user_id == user_id)
                ),
                "deployment_count": await repository.count(
                    conn, select(deployments.c.id).where(deployments.c.user_id == user_id)
                ),
                "subscription_count": await repository.count(
                    conn,
                    select(library_entries.c.id).where(
                        library_entries.c.user_id == user_id, library_entries.c.source_type == "subscribed"
                    ),
                ),
            }
        return found, counts

    async def delete(self, user_id: uuid.UUID) -> Deletion:
        """Deletes the user and everything they own in one transaction (a paying subscription is
        cancelled at Stripe first: nothing is charged after); counts what went."""
        await self._billing.cancel_for_deletion(user_id)
        async with self._db.transaction() as conn:
            if await repository.user(conn, user_id) is None:
                raise NotFound(USER_NOT_FOUND)
            owned = [
                row.id
                for row in await conn.execute(select(workflows.c.id).where(workflows.c.user_id == user_id))
            ]
            owned_deployments = [
                row.id
                for row in await conn.execute(
                    select(deployments.c.id).where(deployments.c.user_id == user_id)
                )
            ]
            own_entries = (
                await conn.execute(
                    select(library_entries, workflows.c.forked_from_id)
                    .join(workflows, workflows.c.id == library_entries.c.workflow_id)
                    .where(library_entries.c.user_id == user_id)
                )
            ).all()
            stats = {
                "workflows": len(owned),
                "workflow_versions": await repository.count(
                    conn,
                    select(workflow_versions.c.version).where(workflow_versions.c.workflow_id.in_(owned)),
                ),
                "deployments": len(owned_deployments),
                "deployment_prompts": await repository.count(
                    conn,
                    select(deployment_workflows.c.workflow_id).where(
                        deployment_workflows.c.deployment_id.in_(owned_deployments)
                    ),
                ),
                # Each deployment's endpoint lookup goes with it (one per deployment).
                "deployment_lookups": len(owned_deployments),
                "subscriptions": sum(1 for entry in own_entries if entry.source_type == "subscribed"),
                "subscriber_entries": await repository.count(
                    conn,
                    select(library_entries.c.id).where(
                        library_entries.c.workflow_id.in_(owned), library_entries.c.user_id != user_id
                    ),
                ),
                "billing_records": await billing_records(conn, user_id),
            }
            # Others' workflows lose this user's subscriptions, ratings and forks.
            for entry in own_entries:
                if entry.workflow_id not in owned:
                    await repository.uncount_entry(conn, entry)
            for entry in own_entries:
                if entry.source_type == "forked" and entry.workflow_id in owned:
                    await repository.adjust(conn, entry.forked_from_id, forks=-1)
            await repository.delete_workflows(conn, owned)
            await repository.delete_user(conn, user_id)
        return Deletion(user_id, utcnow(), stats)
