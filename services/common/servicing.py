"""The gRPC side of a ResourceService: request messages in, rows out as the API's messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.message import Message

from services.common.fields import parse_input, parse_path_id, to_message
from services.common.grpc_server import send_http_status
from services.common.identity import current_identity
from services.common.resource import ResourceService


class ResourceRpcs:
    """List/Create/Get/Update/Delete of one resource, named as its proto names them (lead / leads)."""

    def __init__(
        self,
        service: ResourceService,
        *,
        message: type[Message],
        input_message: type[Message],
        singular: str,
        plural: str,
    ) -> None:
        self.service = service
        self._message = message
        self._input = input_message.DESCRIPTOR
        self._singular = singular
        self._plural = plural

    def message(self, row: Any) -> Message:
        return to_message(row, self._message)

    def _id(self, request: Any) -> Any:
        return parse_path_id(request.id, param="id", not_found=self.service.not_found)

    async def list(
        self, request: Any, response: type[Message], filters: Mapping[str, Any] | None = None
    ) -> Any:
        limit = request.limit if request.HasField("limit") else None
        rows = await self.service.list(current_identity(), limit=limit, filters=filters)
        return response(**{self._plural: [self.message(r) for r in rows], "count": len(rows)})

    async def create(self, request: Any, context: grpc.aio.ServicerContext, response: type[Message]) -> Any:
        fields = parse_input(getattr(request, self._singular), self._input, partial=False)
        row = await self.service.create(current_identity(), fields)
        await send_http_status(context, 201)
        return response(**{self._singular: self.message(row)})

    async def get(self, request: Any, response: type[Message]) -> Any:
        row = await self.service.get(current_identity(), self._id(request))
        return response(**{self._singular: self.message(row)})

    async def update(self, request: Any, response: type[Message]) -> Any:
        row_id = self._id(request)
        fields = parse_input(getattr(request, self._singular), self._input, partial=True)
        row = await self.service.update(current_identity(), row_id, fields)
        return response(**{self._singular: self.message(row)})

    async def delete(self, request: Any, context: grpc.aio.ServicerContext, response: type[Message]) -> Any:
        await self.service.delete(current_identity(), self._id(request))
        await send_http_status(context, 204)
        return response()
