"""crm over gRPC: each RPC delegates to its resource's shared request handling."""

from __future__ import annotations

from typing import Any

from hydra.crm.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    contacts_pb2,
    contacts_pb2_grpc,
    leads_pb2,
    leads_pb2_grpc,
)

from services.common.fields import optional_query, query_choice, query_uuid
from services.common.servicing import ResourceRpcs
from services.crm.models import LIFECYCLE_STAGES
from services.crm.service import AccountService, ContactService, LeadService


class LeadServicer(leads_pb2_grpc.LeadServiceServicer):
    """LeadService."""

    def __init__(self, service: LeadService) -> None:
        self._rpc = ResourceRpcs(
            service,
            message=leads_pb2.Lead,
            input_message=leads_pb2.LeadInput,
            singular="lead",
            plural="leads",
        )

    async def ListLeads(self, request: Any, context: Any) -> Any:
        return await self._rpc.list(request, leads_pb2.ListLeadsResponse)

    async def CreateLead(self, request: Any, context: Any) -> Any:
        return await self._rpc.create(request, context, leads_pb2.CreateLeadResponse)

    async def GetLead(self, request: Any, context: Any) -> Any:
        return await self._rpc.get(request, leads_pb2.GetLeadResponse)

    async def UpdateLead(self, request: Any, context: Any) -> Any:
        return await self._rpc.update(request, leads_pb2.UpdateLeadResponse)

    async def DeleteLead(self, request: Any, context: Any) -> Any:
        return await self._rpc.delete(request, context, leads_pb2.DeleteLeadResponse)


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

    async def ListAccounts(self, request: Any, context: Any) -> Any:
        stage = query_choice(optional_query(request, "lifecycle_stage"), "lifecycle_stage", LIFECYCLE_STAGES)
        return await self._rpc.list(request, accounts_pb2.ListAccountsResponse, {"lifecycle_stage": stage})

    async def CreateAccount(self, request: Any, context: Any) -> Any:
        return await self._rpc.create(request, context, accounts_pb2.CreateAccountResponse)

    async def GetAccount(self, request: Any, context: Any) -> Any:
        return await self._rpc.get(request, accounts_pb2.GetAccountResponse)

    async def UpdateAccount(self, request: Any, context: Any) -> Any:
        return await self._rpc.update(request, accounts_pb2.UpdateAccountResponse)

    async def DeleteAccount(self, request: Any, context: Any) -> Any:
        return await self._rpc.delete(request, context, accounts_pb2.DeleteAccountResponse)


class ContactServicer(contacts_pb2_grpc.ContactServiceServicer):
    """ContactService."""

    def __init__(self, service: ContactService) -> None:
        self._rpc = ResourceRpcs(
            service,
            message=contacts_pb2.Contact,
            input_message=contacts_pb2.ContactInput,
            singular="contact",
            plural="contacts",
        )

    async def ListContacts(self, request: Any, context: Any) -> Any:
        account = query_uuid(optional_query(request, "account_id"), "account_id")
        return await self._rpc.list(request, contacts_pb2.ListContactsResponse, {"account_id": account})

    async def CreateContact(self, request: Any, context: Any) -> Any:
        return await self._rpc.create(request, context, contacts_pb2.CreateContactResponse)

    async def GetContact(self, request: Any, context: Any) -> Any:
        return await self._rpc.get(request, contacts_pb2.GetContactResponse)

    async def UpdateContact(self, request: Any, context: Any) -> Any:
        return await self._rpc.update(request, contacts_pb2.UpdateContactResponse)

    async def DeleteContact(self, request: Any, context: Any) -> Any:
        return await self._rpc.delete(request, context, contacts_pb2.DeleteContactResponse)
