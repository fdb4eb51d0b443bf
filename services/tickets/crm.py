"""What tickets asks crm over gRPC: does this contact or conversation belong to the tenant?"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
from hydra.crm.v1 import contacts_pb2, contacts_pb2_grpc, conversations_pb2, conversations_pb2_grpc

from services.common.errors import FieldError, Unavailable, ValidationError
from services.common.grpc_server import internal_metadata

_SCOPES = ("crm:read", "conversations:read")


class CrmDirectory:
    """Looks up crm records for a tenant; never reads crm's tables."""

    def __init__(self, address: str, *, timeout: float) -> None:
        # Short reconnect backoff: a restarted crm is usable again within a fraction of a second.
        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 1000),
            ],
        )
        self._contacts = contacts_pb2_grpc.ContactServiceStub(self._channel)
        self._conversations = conversations_pb2_grpc.ConversationServiceStub(self._channel)
        self._timeout = timeout

    async def contact_email(self, tenant_id: uuid.UUID, contact_id: uuid.UUID, *, field: str) -> str:
        """The contact's email; a validation error on `field` if the tenant has no such contact."""
        request = contacts_pb2.GetContactRequest(id=str(contact_id))
        response = await self._call(self._contacts.GetContact, request, tenant_id, field, "Contact not found")
        return str(response.contact.email)

    async def require_conversation(
        self, tenant_id: uuid.UUID, conversation_id: uuid.UUID, *, field: str
    ) -> None:
        """Raises a validation error on `field` unless the tenant has this conversation."""
        request = conversations_pb2.GetConversationRequest(id=str(conversation_id))
        await self._call(
            self._conversations.GetConversation, request, tenant_id, field, "Conversation not found"
        )

    async def _call(self, method: Any, request: Any, tenant_id: uuid.UUID, field: str, missing: str) -> Any:
        try:
            return await method(
                request,
                metadata=internal_metadata(str(tenant_id), _SCOPES, key_id="tickets"),
                timeout=self._timeout,
                wait_for_ready=True,
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                raise ValidationError(FieldError(("body", field), missing, "not_found")) from None
            raise Unavailable("crm is unavailable; nothing was changed. Retry safe.") from None

    async def ping(self) -> None:
        """Raises unless crm's channel can connect."""
        await self._channel.channel_ready()

    async def close(self) -> None:
        await self._channel.close()
