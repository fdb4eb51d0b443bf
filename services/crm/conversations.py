"""Conversation use cases: opened internally, with messages; the public API resolves, escalates or assigns."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.audit import AuditLog
from services.common.crud import TenantTable
from services.common.db import Database
from services.common.errors import FieldError, NotFound, ValidationError
from services.common.events.catalogue import announcement
from services.common.events.outbox import Outbox
from services.common.fields import aware, parse_limit, utcnow
from services.common.identity import Identity
from services.common.paging import UNSIGNED, Cursors
from services.common.resource import Page, ResourceService, View, page_within
from services.crm import repository


class ConversationService(ResourceService):
    """Conversations: opened internally; the public API resolves, escalates or assigns them once."""

    resource = "conversation"
    not_found = "Conversation not found."

    def __init__(
        self,
        *,
        db: Database,
        table: TenantTable,
        audit: AuditLog,
        messages: TenantTable,
        contacts: TenantTable,
        outbox: Outbox,
        cursors: Cursors = UNSIGNED,
        announce: View | None = None,
        announce_message: View | None = None,
    ) -> None:
        super().__init__(db=db, table=table, audit=audit, outbox=outbox, cursors=cursors, announce=announce)
        self._messages = messages
        self._announce_message = announce_message  # with a view, each message is announced
        self._contacts = contacts

    async def open(
        self,
        caller: Identity,
        *,
        channel: str,
        channel_id: uuid.UUID | None,
        customer_id: uuid.UUID | None,
        subject: str | None,
        instance_id: uuid.UUID | None = None,
    ) -> Row[Any]:
        """Opens a conversation (widget sessions, inbound email)."""
        return await self.create(
            caller,
            {
                "channel": channel,
                "channel_id": channel_id,
                "customer_id": customer_id,
                "subject": subject,
                "instance_id": instance_id,
            },
        )

    async def before_create(
        self, conn: AsyncConnection, caller: Identity, fields: dict[str, Any]
    ) -> dict[str, Any]:
        customer = fields.get("customer_id")
        if (
            customer is not None
            and await self._contacts.get(conn, tenant_id=caller.tenant_id, row_id=customer) is None
        ):
            raise ValidationError(FieldError(("body", "customer_id"), "Contact not found", "not_found"))
        return {**fields, "status": "open", "message_count": 0}

    async def add_message(
        self,
        caller: Identity,
        conversation_id: uuid.UUID,
        *,
        role: str,
        content: str,
        instance_id: uuid.UUID | None = None,
    ) -> tuple[Row[Any], Row[Any]]:
        """Appends a message and bumps the conversation's activity; returns the message and conversation."""
        now = utcnow()
        async with self.transaction() as conn:
            conversation = await self.table.get(conn, tenant_id=caller.tenant_id, row_id=conversation_id)
            if conversation is None or (instance_id is not None and conversation.instance_id != instance_id):
                raise NotFound(self.not_found)
            message = await self._messages.insert(
                conn,
                values={
                    "tenant_id": caller.tenant_id,
                    "id": uuid.uuid4(),
                    "conversation_id": conversation_id,
                    "role": role,
                    "content": content,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            updated = await self.table.update(
                conn,
                tenant_id=caller.tenant_id,
                row_id=conversation_id,
                values={
                    "last_message_at": now,
                    "updated_at": now,
                    "message_count": conversation.message_count + 1,
                },
            )
            assert updated is not None  # read in this transaction
            if self._announce_message is not None:
                await self.outbox.record(
                    conn,
                    tenant_id=caller.tenant_id,
                    topic="message.created",
                    payload=announcement(self._announce_message(message)),
                )
            await self._audit.record(
                conn, caller, resource="message", resource_id=message.id, action="create"
            )
        return message, updated

    async def latest_messages(
        self,
        caller: Identity,
        conversation_id: uuid.UUID,
        *,
        limit: int,
        instance_id: uuid.UUID | None = None,
    ) -> list[Row[Any]]:
        """The conversation's latest `limit` messages, oldest first."""
        async with self._db.read() as conn:
            await self._require(conn, caller, conversation_id, instance_id)
            rows = await repository.latest_messages(
                conn, tenant_id=caller.tenant_id, conversation_id=conversation_id, limit=limit
            )
        return list(reversed(rows))

    async def messages(
        self,
        caller: Identity,
        conversation_id: uuid.UUID,
        *,
        limit: int | None,
        cursor: str | None = None,
        since: Mapping[str, Any] | None = None,
        instance_id: uuid.UUID | None = None,
    ) -> Page:
        """A page of the conversation's messages, oldest first, after the one `cursor` names."""
        async with self._db.read() as conn:
            await self._require(conn, caller, conversation_id, instance_id)
            return await page_within(
                conn,
                self._messages,
                self._cursors,
                tenant_id=caller.tenant_id,
                count=parse_limit(limit, default=self.list_default, maximum=self.list_maximum),
                cursor=cursor,
                filters={"conversation_id": conversation_id},
                since=since,
            )

    def message_cursor(self, row: Any) -> str:
        """A signed cursor to the messages after `row`."""
        return self._messages.cursor(row, self._cursors)

    async def _require(
        self,
        conn: AsyncConnection,
        caller: Identity,
        conversation_id: uuid.UUID,
        instance_id: uuid.UUID | None,
    ) -> None:
        """Refuses (not found) a conversation of another tenant, or of another instance when one is named."""
        conversation = await self.table.get(conn, tenant_id=caller.tenant_id, row_id=conversation_id)
        if conversation is None or (instance_id is not None and conversation.instance_id != instance_id):
            raise NotFound(self.not_found)

    async def annotate(
        self, caller: Identity, conversation_id: uuid.UUID, *, tags: dict[str, str], handoff_reason: str
    ) -> Row[Any]:
        """Sets the bot pipeline's tags; a handoff reason escalates an open conversation to a human."""
        async with self.transaction() as conn:
            before = await self.table.get(conn, tenant_id=caller.tenant_id, row_id=conversation_id)
            if before is None:
                raise NotFound(self.not_found)
            values: dict[str, Any] = dict(tags)
            if handoff_reason and before.status not in ("resolved", "escalated"):
                values.update(status="escalated", handoff_at=utcnow(), handoff_reason=handoff_reason)
            if not values:
                return before
            row = await self.table.update(
                conn,
                tenant_id=caller.tenant_id,
                row_id=conversation_id,
                values={**values, "updated_at": utcnow()},
            )
            assert row is not None  # read in this transaction
            await self.after_update(conn, caller, before, row, {})
            await self._audit.record(
                conn, caller, resource=self.resource, resource_id=conversation_id, action="update"
            )
        return row

    async def before_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], fields: dict[str, Any]
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        agent = fields.get("assigned_agent_id")
        if agent is not None and before.assigned_agent_id not in (None, agent):
            raise ValidationError(
                FieldError(
                    ("body", "assigned_agent_id"),
                    "Conversation is already assigned; re-assigning is admin-UI-only",
                    "reassign_forbidden",
                )
            )
        if agent is not None and before.assigned_agent_id is None:
            values["assigned_agent_id"] = agent
            if before.status == "open":
                values["status"] = "assigned"
        status = fields.get("status")
        if status is not None and status != before.status:
            if before.status == "resolved":
                raise ValidationError(
                    FieldError(
                        ("body", "status"),
                        "Conversation is resolved; reopening is admin-UI-only",
                        "reopen_forbidden",
                    )
                )
            values["status"] = status
            now = utcnow()
            if status == "resolved":
                values.update(
                    resolved_at=now,
                    csat_requested_at=now,
                    resolution_seconds=int((now - aware(before.created_at)).total_seconds()),
                    summary=await self._summary(conn, caller, before.id),
                )
            else:
                values.update(handoff_at=now, handoff_reason="escalated via API")
        return values

    async def _summary(self, conn: AsyncConnection, caller: Identity, conversation_id: uuid.UUID) -> str:
        rows = await self._messages.list(
            conn, tenant_id=caller.tenant_id, limit=1000, filters={"conversation_id": conversation_id}
        )
        asked = next((m.content for m in rows if m.role == "visitor"), None)
        if asked is None:
            return f"{len(rows)} message(s); no customer message."
        excerpt = asked if len(asked) <= 200 else asked[:197] + "..."
        return f"{len(rows)} message(s). Customer asked: {excerpt}"

    async def after_update(
        self, conn: AsyncConnection, caller: Identity, before: Row[Any], row: Row[Any], facts: dict[str, Any]
    ) -> None:
        if row.status == before.status:
            return
        event = {"conversation_id": str(row.id), "from": before.status, "to": row.status}
        await self.outbox.record(
            conn, tenant_id=caller.tenant_id, topic=f"conversation.{row.status}", payload=event
        )
        if row.status != "resolved":
            return
        email = None
        if row.customer_id is not None:
            contact = await self._contacts.get(conn, tenant_id=caller.tenant_id, row_id=row.customer_id)
            email = contact.email if contact is not None else None
        await self.outbox.record(
            conn,
            tenant_id=caller.tenant_id,
            topic="conversation.csat_requested",
            payload={"conversation_id": str(row.id), "email": email, "summary": row.summary},
        )
