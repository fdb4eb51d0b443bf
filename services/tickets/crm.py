"""What tickets asks crm over gRPC: does this contact or conversation belong to the tenant?"""

from __future__ import annotations

import uuid

from hydra.crm.v1 import contacts_pb2, contacts_pb2_grpc, conversations_pb2, conversations_pb2_grpc

from services.common.errors import FieldError, ValidationError
from services.common.peers import PeerChannel

_UNAVAILABLE = "crm is unavailable; nothing was changed. Retry safe."


class CrmDirectory:
    """Looks up crm records for a tenant; never reads crm's tables."""

    def __init__(self, address: str, *, timeout: float) -> None:
        self._peer = PeerChannel(
            address, caller="tickets", scopes=("crm:read", "conversations:read"), timeout=timeout
        )
        self._contacts = contacts_pb2_grpc.ContactServiceStub(self._peer.channel)
        self._conversations = conversations_pb2_grpc.ConversationServiceStub(self._peer.channel)

    async def contact_email(self, tenant_id: uuid.UUID, contact_id: uuid.UUID, *, field: str) -> str:
        """The contact's email; a validation error on `field` if the tenant has no such contact."""
        request = contacts_pb2.GetContactRequest(id=str(contact_id))
        response = await self._peer.lookup(
            self._contacts.GetContact, request, tenant_id, unavailable=_UNAVAILABLE
        )
        if response is None:
            raise ValidationError(FieldError(("body", field), "Contact not found", "not_found"))
        return str(response.contact.email)

    async def require_conversation(
        self, tenant_id: uuid.UUID, conversation_id: uuid.UUID, *, field: str
    ) -> None:
        """Raises a validation error on `field` unless the tenant has this conversation."""
        request = conversations_pb2.GetConversationRequest(id=str(conversation_id))
        response = await self._peer.lookup(
            self._conversations.GetConversation, request, tenant_id, unavailable=_UNAVAILABLE
        )
        if response is None:
            raise ValidationError(FieldError(("body", field), "Conversation not found", "not_found"))

    async def close(self) -> None:
        await self._peer.close()
