"""crm over gRPC: each RPC delegates to its resource's shared request handling."""

from __future__ import annotations

from typing import Any

from hydra.crm.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    contacts_pb2,
    contacts_pb2_grpc,
    conversations_pb2,
    conversations_pb2_grpc,
    leads_pb2,
    leads_pb2_grpc,
)

from services.common.fields import (
    optional_query,
    parse_input,
    parse_path_id,
    parse_request,
    query_choice,
    query_uuid,
)
from services.common.identity import current_identity
from services.common.paging import descriptor_of
from services.common.servicing import Context, ResourceRpcs, message_from, page_response, since
from services.crm.accounts import AccountService
from services.crm.contacts import ContactService
from services.crm.conversations import ConversationService
from services.crm.leads import LeadService
from services.crm.models import CONVERSATION_STATUSES, LIFECYCLE_STAGES


class LeadServicer(leads_pb2_grpc.LeadServiceServicer):
    """LeadService."""

    def __init__(self, service: LeadService) -> None:
        self._service = service
        self._rpc = ResourceRpcs(
            service,
            message=leads_pb2.Lead,
            input_message=leads_pb2.LeadInput,
            singular="lead",
            plural="leads",
        )

    async def ListLeads(
        self, request: leads_pb2.ListLeadsRequest, context: Context
    ) -> leads_pb2.ListLeadsResponse:
        return await self._rpc.list(request, leads_pb2.ListLeadsResponse)

    async def CreateLead(
        self, request: leads_pb2.CreateLeadRequest, context: Context
    ) -> leads_pb2.CreateLeadResponse:
        return await self._rpc.create(request, leads_pb2.CreateLeadResponse)

    async def GetLead(self, request: leads_pb2.GetLeadRequest, context: Context) -> leads_pb2.GetLeadResponse:
        return await self._rpc.get(request, leads_pb2.GetLeadResponse)

    async def UpdateLead(
        self, request: leads_pb2.UpdateLeadRequest, context: Context
    ) -> leads_pb2.UpdateLeadResponse:
        return await self._rpc.update(request, leads_pb2.UpdateLeadResponse)

    async def DeleteLead(
        self, request: leads_pb2.DeleteLeadRequest, context: Context
    ) -> leads_pb2.DeleteLeadResponse:
        return await self._rpc.delete(request, leads_pb2.DeleteLeadResponse)

    async def CaptureLead(
        self, request: leads_pb2.CaptureLeadRequest, context: Context
    ) -> leads_pb2.CaptureLeadResponse:
        fields = parse_request(request)
        email, source = fields.pop("email"), fields.pop("source", "")
        row, created = await self._service.capture(
            current_identity(), email=email, details=fields, source=source
        )
        return leads_pb2.CaptureLeadResponse(lead=self._rpc.message(row), created=created)


class AccountServicer(accounts_pb2_grpc.AccountServiceServicer):
    """AccountService."""

    def __init__(self, service: AccountService) -> None:
        self._rpc = ResourceRpcs(
            service,
            message=accounts_pb2.Account,
            input_message=accounts_pb2.AccountInput,
            singular="account",
            plural="accounts",
        )

    async def ListAccounts(
        self, request: accounts_pb2.ListAccountsRequest, context: Context
    ) -> accounts_pb2.ListAccountsResponse:
        stage = query_choice(optional_query(request, "lifecycle_stage"), "lifecycle_stage", LIFECYCLE_STAGES)
        return await self._rpc.list(request, accounts_pb2.ListAccountsResponse, {"lifecycle_stage": stage})

    async def CreateAccount(
        self, request: accounts_pb2.CreateAccountRequest, context: Context
    ) -> accounts_pb2.CreateAccountResponse:
        return await self._rpc.create(request, accounts_pb2.CreateAccountResponse)

    async def GetAccount(
        self, request: accounts_pb2.GetAccountRequest, context: Context
    ) -> accounts_pb2.GetAccountResponse:
        return await self._rpc.get(request, accounts_pb2.GetAccountResponse)

    async def UpdateAccount(
        self, request: accounts_pb2.UpdateAccountRequest, context: Context
    ) -> accounts_pb2.UpdateAccountResponse:
        return await self._rpc.update(request, accounts_pb2.UpdateAccountResponse)

    async def DeleteAccount(
        self, request: accounts_pb2.DeleteAccountRequest, context: Context
    ) -> accounts_pb2.DeleteAccountResponse:
        return await self._rpc.delete(request, accounts_pb2.DeleteAccountResponse)


class ContactServicer(contacts_pb2_grpc.ContactServiceServicer):
    """ContactService: public CRUD, and internal lookups for services that reference contacts."""

    def __init__(self, service: ContactService) -> None:
        self._service = service
        self._rpc = ResourceRpcs(
            service,
            message=contacts_pb2.Contact,
            input_message=contacts_pb2.ContactInput,
            singular="contact",
            plural="contacts",
        )

    async def ListContacts(
        self, request: contacts_pb2.ListContactsRequest, context: Context
    ) -> contacts_pb2.ListContactsResponse:
        account = query_uuid(optional_query(request, "account_id"), "account_id")
        return await self._rpc.list(request, contacts_pb2.ListContactsResponse, {"account_id": account})

    async def CreateContact(
        self, request: contacts_pb2.CreateContactRequest, context: Context
    ) -> contacts_pb2.CreateContactResponse:
        return await self._rpc.create(request, contacts_pb2.CreateContactResponse)

    async def GetContact(
        self, request: contacts_pb2.GetContactRequest, context: Context
    ) -> contacts_pb2.GetContactResponse:
        return await self._rpc.get(request, contacts_pb2.GetContactResponse)

    async def UpdateContact(
        self, request: contacts_pb2.UpdateContactRequest, context: Context
    ) -> contacts_pb2.UpdateContactResponse:
        return await self._rpc.update(request, contacts_pb2.UpdateContactResponse)

    async def DeleteContact(
        self, request: contacts_pb2.DeleteContactRequest, context: Context
    ) -> contacts_pb2.DeleteContactResponse:
        return await self._rpc.delete(request, contacts_pb2.DeleteContactResponse)

    async def LookupContacts(
        self, request: contacts_pb2.LookupContactsRequest, context: Context
    ) -> contacts_pb2.LookupContactsResponse:
        ids = set(parse_request(request).get("ids", ()))
        rows = await self._service.lookup(current_identity(), ids) if ids else []
        return contacts_pb2.LookupContactsResponse(
            contacts=[contacts_pb2.ContactReference(id=str(r.id), email=r.email) for r in rows]
        )


class ConversationServicer(conversations_pb2_grpc.ConversationServiceServicer):
    """ConversationService: public list/get/update, internal create and messages."""

    def __init__(self, service: ConversationService) -> None:
        self._service = service
        self._rpc = ResourceRpcs(
            service,
            message=conversations_pb2.Conversation,
            input_message=conversations_pb2.ConversationInput,
            singular="conversation",
            plural="conversations",
        )

    async def ListConversations(
        self, request: conversations_pb2.ListConversationsRequest, context: Context
    ) -> conversations_pb2.ListConversationsResponse:
        filters = {
            "status": query_choice(optional_query(request, "status"), "status", CONVERSATION_STATUSES),
            "channel_id": query_uuid(optional_query(request, "channel_id"), "channel_id"),
            "assigned_agent_id": query_uuid(
                optional_query(request, "assigned_agent_id"), "assigned_agent_id"
            ),
            "customer_id": query_uuid(optional_query(request, "customer_id"), "customer_id"),
        }
        return await self._rpc.list(request, conversations_pb2.ListConversationsResponse, filters)

    async def GetConversation(
        self, request: conversations_pb2.GetConversationRequest, context: Context
    ) -> conversations_pb2.GetConversationResponse:
        return await self._rpc.get(request, conversations_pb2.GetConversationResponse)

    async def UpdateConversation(
        self, request: conversations_pb2.UpdateConversationRequest, context: Context
    ) -> conversations_pb2.UpdateConversationResponse:
        return await self._rpc.update(request, conversations_pb2.UpdateConversationResponse)

    async def ListConversationMessages(
        self, request: conversations_pb2.ListConversationMessagesRequest, context: Context
    ) -> conversations_pb2.ListConversationMessagesResponse:
        page = await self._service.messages(
            current_identity(),
            parse_path_id(request.id, param="id", not_found=self._service.not_found),
            limit=optional_query(request, "limit"),
            cursor=optional_query(request, "cursor"),
            since=since(request),
        )
        return page_response(
            conversations_pb2.ListConversationMessagesResponse,
            page,
            plural="messages",
            message=_message,
            cursor=self._service.message_cursor,
        )

    async def CreateConversationMessage(
        self, request: conversations_pb2.CreateConversationMessageRequest, context: Context
    ) -> conversations_pb2.CreateConversationMessageResponse:
        conversation_id = parse_path_id(request.id, param="id", not_found=self._service.not_found)
        fields = parse_input(request.message, _REPLY_INPUT, partial=False)
        message, _ = await self._service.add_message(
            current_identity(), conversation_id, role="agent", content=fields["content"]
        )
        return conversations_pb2.CreateConversationMessageResponse(message=_message(message))

    async def CreateConversation(
        self, request: conversations_pb2.CreateConversationRequest, context: Context
    ) -> conversations_pb2.CreateConversationResponse:
        fields = parse_request(request)
        row = await self._service.open(
            current_identity(),
            channel=fields["channel"],
            channel_id=fields.get("channel_id"),
            customer_id=fields.get("customer_id"),
            subject=fields.get("subject"),
            instance_id=fields.get("instance_id"),
        )
        return conversations_pb2.CreateConversationResponse(conversation=self._rpc.message(row))

    async def AddMessage(
        self, request: conversations_pb2.AddMessageRequest, context: Context
    ) -> conversations_pb2.AddMessageResponse:
        fields = parse_request(request)
        message, conversation = await self._service.add_message(
            current_identity(),
            fields["conversation_id"],
            role=fields["role"],
            content=fields["content"],
            instance_id=fields.get("instance_id"),
        )
        return conversations_pb2.AddMessageResponse(
            message=message_from(message, conversations_pb2.Message),
            conversation=self._rpc.message(conversation),
        )

    async def ListMessages(
        self, request: conversations_pb2.ListMessagesRequest, context: Context
    ) -> conversations_pb2.ListMessagesResponse:
        fields = parse_request(request)
        caller, conversation_id, instance_id = (
            current_identity(),
            fields["conversation_id"],
            fields.get("instance_id"),
        )
        after = fields.get("after") or None
        if after is None:
            rows = list(
                await self._service.latest_messages(
                    caller, conversation_id, limit=fields["limit"], instance_id=instance_id
                )
            )
        else:
            page = await self._service.messages(
                caller, conversation_id, limit=fields["limit"], cursor=after, instance_id=instance_id
            )
            rows = list(page.rows)
        return conversations_pb2.ListMessagesResponse(
            messages=[_message(row) for row in rows],
            next_cursor=self._service.message_cursor(rows[-1]) if rows else (after or ""),
        )

    async def AnnotateConversation(
        self, request: conversations_pb2.AnnotateConversationRequest, context: Context
    ) -> conversations_pb2.AnnotateConversationResponse:
        fields = parse_request(request)
        row = await self._service.annotate(
            current_identity(),
            fields.pop("conversation_id"),
            handoff_reason=fields.pop("handoff_reason", ""),
            tags=fields,
        )
        return conversations_pb2.AnnotateConversationResponse(conversation=self._rpc.message(row))


_REPLY_INPUT = descriptor_of(conversations_pb2.ConversationMessageInput)


def _message(row: Any) -> conversations_pb2.Message:
    return message_from(row, conversations_pb2.Message)
