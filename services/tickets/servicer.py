"""TicketService over gRPC: each RPC delegates to the shared resource request handling."""

from __future__ import annotations

from hydra.tickets.v1 import tickets_pb2, tickets_pb2_grpc

from services.common.fields import optional_query, query_choice, query_uuid
from services.common.servicing import Context, ResourceRpcs
from services.tickets.models import PRIORITIES, STATUSES
from services.tickets.service import TicketService


class TicketServicer(tickets_pb2_grpc.TicketServiceServicer):
    """TicketService."""

    def __init__(self, service: TicketService) -> None:
        self._rpc = ResourceRpcs(
            service,
            message=tickets_pb2.Ticket,
            input_message=tickets_pb2.TicketInput,
            singular="ticket",
            plural="tickets",
        )

    async def ListTickets(
        self, request: tickets_pb2.ListTicketsRequest, context: Context
    ) -> tickets_pb2.ListTicketsResponse:
        filters = {
            "status": query_choice(optional_query(request, "status"), "status", STATUSES),
            "priority": query_choice(optional_query(request, "priority"), "priority", PRIORITIES),
            "assigned_to": query_uuid(optional_query(request, "assigned_to"), "assigned_to"),
            "customer_id": query_uuid(optional_query(request, "customer_id"), "customer_id"),
            "conversation_id": query_uuid(optional_query(request, "conversation_id"), "conversation_id"),
        }
        return await self._rpc.list(request, tickets_pb2.ListTicketsResponse, filters)

    async def CreateTicket(
        self, request: tickets_pb2.CreateTicketRequest, context: Context
    ) -> tickets_pb2.CreateTicketResponse:
        return await self._rpc.create(request, tickets_pb2.CreateTicketResponse)

    async def GetTicket(
        self, request: tickets_pb2.GetTicketRequest, context: Context
    ) -> tickets_pb2.GetTicketResponse:
        return await self._rpc.get(request, tickets_pb2.GetTicketResponse)

    async def UpdateTicket(
        self, request: tickets_pb2.UpdateTicketRequest, context: Context
    ) -> tickets_pb2.UpdateTicketResponse:
        return await self._rpc.update(request, tickets_pb2.UpdateTicketResponse)

    async def DeleteTicket(
        self, request: tickets_pb2.DeleteTicketRequest, context: Context
    ) -> tickets_pb2.DeleteTicketResponse:
        return await self._rpc.delete(request, tickets_pb2.DeleteTicketResponse)
