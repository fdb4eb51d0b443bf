"""The gRPC side of a ResourceService: request messages in, rows out as the API's messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.message import Message

from services.common.fields import parse_input, parse_path_id, to_message
from services.common.identity import current_identity
from services.common.resource import ResourceService, Scope


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
        id_field: str = "id",
    ) -> None:
        self.service = service
        self._message = message
        self._input = input_message.DESCRIPTOR
        self._singular = singular
        self._plural = plural
        self._id_field = id_field

    def message(self, row: Any) -> Message:
        return to_message(row, self._message)

    def _answer(self, row: Any, response: type[Message]) -> Message:
        """The response: the resource itself (HydraCore), or wrapped as {singular: resource} (Support)."""
        message = self.message(row)
        return message if response is self._message else response(**{self._singular: message})

    def _id(self, request: Any) -> Any:
        return parse_path_id(
            getattr(request, self._id_field), param=self._id_field, not_found=self.service.not_found
        )

    async def list(
        self, request: Any, response: type[Message], filters: Mapping[str, Any] | None = None
    ) -> Any:
        has_limit = "limit" in request.DESCRIPTOR.fields_by_name and request.HasField("limit")
        limit = request.limit if has_limit else None
        rows = await self.service.list(current_identity(), limit=limit, filters=filters)
        return response(**{self._plural: [self.message(r) for r in rows], "count": len(rows)})

    async def create(self, request: Any, response: type[Message], scope: Scope = None) -> Any:
        fields = parse_input(getattr(request, self._singular), self._input, partial=False)
        row = await self.service.create(current_identity(), {**fields, **(scope or {})})
        return self._answer(row, response)

    async def get(self, request: Any, response: type[Message], scope: Scope = None) -> Any:
        row = await self.service.get(current_identity(), self._id(request), scope=scope)
        return self._answer(row, response)

    async def update(self, request: Any, response: type[Message], scope: Scope = None) -> Any:
        row_id = self._id(request)
        fields = parse_input(getattr(request, self._singular), self._input, partial=True)
        row = await self.service.update(current_identity(), row_id, fields, scope=scope)
        return self._answer(row, response)

    async def delete(self, request: Any, response: type[Message], scope: Scope = None) -> Any:
        await self.service.delete(current_identity(), self._id(request), scope=scope)
        return response()
