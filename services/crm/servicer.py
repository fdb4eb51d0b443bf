"""LeadService over gRPC: proto in, use case, proto out."""

from __future__ import annotations

from typing import Any

import grpc
from hydra.crm.v1 import leads_pb2, leads_pb2_grpc
from sqlalchemy import Row

from services.common.fields import nullable, parse_input, parse_path_id, timestamp
from services.common.grpc_server import send_http_status
from services.common.identity import current_identity
from services.crm.service import LEAD_NOT_FOUND, LeadService


def lead_message(row: Row[Any]) -> leads_pb2.Lead:
    """A stored lead as the API shows it."""
    return leads_pb2.Lead(
        id=str(row.id),
        tenant_id=str(row.tenant_id),
        email=nullable(row.email),
        name=nullable(row.name),
        phone=nullable(row.phone),
        company=nullable(row.company),
        source=nullable(row.source),
        source_bot_id=nullable(row.source_bot_id),
        source_conversation_id=nullable(row.source_conversation_id),
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )


def _lead_id(request: Any) -> Any:
    return parse_path_id(request.id, param="id", not_found=LEAD_NOT_FOUND)


class LeadServicer(leads_pb2_grpc.LeadServiceServicer):
    """Thin adapter from the generated service to LeadService."""

    def __init__(self, service: LeadService) -> None:
        self._service = service

    async def ListLeads(
        self, request: leads_pb2.ListLeadsRequest, context: grpc.aio.ServicerContext
    ) -> leads_pb2.ListLeadsResponse:
        limit = request.limit if request.HasField("limit") else None
        rows = await self._service.list(current_identity(), limit=limit)
        return leads_pb2.ListLeadsResponse(leads=[lead_message(r) for r in rows], count=len(rows))

    async def CreateLead(
        self, request: leads_pb2.CreateLeadRequest, context: grpc.aio.ServicerContext
    ) -> leads_pb2.CreateLeadResponse:
        fields = parse_input(request.lead, leads_pb2.LeadInput.DESCRIPTOR, partial=False)
        row = await self._service.create(current_identity(), fields)
        await send_http_status(context, 201)
        return leads_pb2.CreateLeadResponse(lead=lead_message(row))

    async def GetLead(
        self, request: leads_pb2.GetLeadRequest, context: grpc.aio.ServicerContext
    ) -> leads_pb2.GetLeadResponse:
        row = await self._service.get(current_identity(), _lead_id(request))
        return leads_pb2.GetLeadResponse(lead=lead_message(row))

    async def UpdateLead(
        self, request: leads_pb2.UpdateLeadRequest, context: grpc.aio.ServicerContext
    ) -> leads_pb2.UpdateLeadResponse:
        lead_id = _lead_id(request)
        fields = parse_input(request.lead, leads_pb2.LeadInput.DESCRIPTOR, partial=True)
        row = await self._service.update(current_identity(), lead_id, fields)
        return leads_pb2.UpdateLeadResponse(lead=lead_message(row))

    async def DeleteLead(
        self, request: leads_pb2.DeleteLeadRequest, context: grpc.aio.ServicerContext
    ) -> leads_pb2.DeleteLeadResponse:
        await self._service.delete(current_identity(), _lead_id(request))
        await send_http_status(context, 204)
        return leads_pb2.DeleteLeadResponse()
