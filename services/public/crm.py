"""What public asks crm over gRPC: widget conversations and their messages, and leads from forms."""

from __future__ import annotations

import uuid
from typing import Any

from hydra.crm.v1 import conversations_pb2, conversations_pb2_grpc, leads_pb2, leads_pb2_grpc

from services.common.errors import NotFound, Unavailable
from services.common.paging import invalid_cursor
from services.common.peers import PeerChannel

_UNAVAILABLE = "crm is unavailable. Retry safe."
CONVERSATION_NOT_FOUND = "Conversation not found"
WIDGET_CHANNEL = "web_chat"


class CrmConversations:
    """Conversations, messages and leads in crm, for one tenant at a time; never reads crm's tables."""

    def __init__(self, address: str, *, timeout: float) -> None:
        self._peer = PeerChannel(
            address,
            caller="public",
            scopes=("conversations:read", "conversations:write", "crm:write"),
            timeout=timeout,
        )
        self._conversations = conversations_pb2_grpc.ConversationServiceStub(self._peer.channel)
        self._leads = leads_pb2_grpc.LeadServiceStub(self._peer.channel)

    async def _call(self, method: Any, request: Any, tenant_id: uuid.UUID) -> Any:
        response = await self._peer.lookup(method, request, tenant_id, unavailable=_UNAVAILABLE)
        if response is None:
            raise NotFound(CONVERSATION_NOT_FOUND)
        return response

    async def open(self, tenant_id: uuid.UUID, *, instance_id: uuid.UUID, subject: str) -> Any:
        """Opens a web_chat conversation of the instance; returns it."""
        request = conversations_pb2.CreateConversationRequest(
            channel=WIDGET_CHANNEL, instance_id=str(instance_id), subject=subject
        )
        return (await self._call(self._conversations.CreateConversation, request, tenant_id)).conversation

    async def add_message(
        self,
        tenant_id: uuid.UUID,
        conversation_id: str,
        *,
        role: str,
        content: str,
        instance_id: uuid.UUID | None = None,
    ) -> Any:
        """Appends a message (checking its instance, if given); returns the message and conversation."""
        request = conversations_pb2.AddMessageRequest(
            conversation_id=conversation_id,
            role=role,
            content=content,
            instance_id=str(instance_id) if instance_id else "",
        )
        return await self._call(self._conversations.AddMessage, request, tenant_id)

    async def history(self, tenant_id: uuid.UUID, conversation_id: str, *, limit: int) -> list[Any]:
        """The conversation's latest messages, oldest first."""
        request = conversations_pb2.ListMessagesRequest(conversation_id=conversation_id, limit=limit)
        return list((await self._call(self._conversations.ListMessages, request, tenant_id)).messages)

    async def messages_after(
        self, tenant_id: uuid.UUID, conversation_id: str, *, instance_id: uuid.UUID, after: str, limit: int
    ) -> tuple[list[Any], str]:
        """The conversation's messages after the cursor `after` (its latest ones when empty), oldest first,
        and a cursor to those that follow them; not found unless the conversation is the instance's."""
        request = conversations_pb2.ListMessagesRequest(
            conversation_id=conversation_id, limit=limit, after=after, instance_id=str(instance_id)
        )
        response = await self._peer.lookup(
            self._conversations.ListMessages,
            request,
            tenant_id,
            unavailable=_UNAVAILABLE,
            invalid=invalid_cursor(),
        )
        if response is None:
            raise NotFound(CONVERSATION_NOT_FOUND)
        return list(response.messages), response.next_cursor

    async def annotate(
        self, tenant_id: uuid.UUID, conversation_id: str, *, tags: dict[str, str], handoff_reason: str = ""
    ) -> Any:
        """Sets tags, and hands the conversation to a human when a reason is given; returns it."""
        request = conversations_pb2.AnnotateConversationRequest(
            conversation_id=conversation_id, handoff_reason=handoff_reason, **tags
        )
        return (await self._call(self._conversations.AnnotateConversation, request, tenant_id)).conversation

    async def capture_lead(self, tenant_id: uuid.UUID, *, email: str, details: dict[str, str]) -> Any:
        """The tenant's lead with this email: created (source website_form), or found unchanged."""
        request = leads_pb2.CaptureLeadRequest(email=email, source="website_form", **details)
        response = await self._peer.lookup(
            self._leads.CaptureLead, request, tenant_id, unavailable=_UNAVAILABLE
        )
        if response is None:
            raise Unavailable(_UNAVAILABLE)
        return response.lead

    async def close(self) -> None:
        await self._peer.close()
