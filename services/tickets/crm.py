"""What tickets asks crm over gRPC: does this contact or conversation belong to the tenant?"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from hydra.crm.v1 import contacts_pb2, contacts_pb2_grpc, conversations_pb2, conversations_pb2_grpc

from services.common.batching import LookupCoalescer
from services.common.errors import FieldError, ValidationError
from services.common.peers import PeerChannel

_UNAVAILABLE = "crm is unavailable; nothing was changed. Retry safe."
_LOOKUP_BATCH = 500  # crm's limit per LookupContacts call
# Under load, LookupContacts calls of one tenant start at least this far apart. A call costs both
# services far more than the ids it carries: waiting up to 20 ms for company cuts the CPU of a busy
# ticket create by about a fifth. A lookup that finds no call under way is not delayed.
_LOOKUP_INTERVAL = 0.02


class CrmDirectory:
    """Looks up crm records for a tenant; never reads crm's tables.

    Contact lookups of concurrent requests of one tenant share LookupContacts calls.
    """

    def __init__(self, address: str, *, timeout: float) -> None:
        self._peer = PeerChannel(
            address, caller="tickets", scopes=("crm:read", "conversations:read"), timeout=timeout
        )
        self._contacts = contacts_pb2_grpc.ContactServiceStub(self._peer.channel)
        self._conversations = conversations_pb2_grpc.ConversationServiceStub(self._peer.channel)
        self._contact_emails = LookupCoalescer(
            self._lookup_contacts, max_batch=_LOOKUP_BATCH, min_interval=_LOOKUP_INTERVAL
        )

    async def contact_email(self, tenant_id: uuid.UUID, contact_id: uuid.UUID, *, field: str) -> str:
        """The contact's email; a validation error on `field` if the tenant has no such contact."""
        email = await self._contact_emails.get(tenant_id, contact_id)
        if email is None:
            raise ValidationError(FieldError(("body", field), "Contact not found", "not_found"))
        return email

    async def _lookup_contacts(self, tenant_id: uuid.UUID, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
        request = contacts_pb2.LookupContactsRequest(ids=[str(i) for i in ids])
        response = await self._peer.lookup(
            self._contacts.LookupContacts, request, tenant_id, unavailable=_UNAVAILABLE
        )
        return {uuid.UUID(c.id): c.email for c in response.contacts} if response is not None else {}

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
