"""The gRPC side of a ResourceService: request messages in, rows out as the API's messages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeAlias, TypeVar, cast

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message

from services.common.conditional import answer_version, require_match
from services.common.events.catalogue import EVENT_TYPES
from services.common.fields import optional_query, parse_input, parse_path_id, query_moment, to_message
from services.common.identity import current_identity
from services.common.paging import descriptor_of, fitting
from services.common.resource import Page, ResourceService, Scope, View

ResourceMessage = TypeVar("ResourceMessage", bound=Message)
Response = TypeVar("Response", bound=Message)

# What every RPC method is handed beside its request (the request and response types are on the method).
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def message_from(row: Any, message_type: type[Response]) -> Response:
    """to_message, typed as the message it builds: an instance of `message_type`."""
    return cast(Response, to_message(row, message_type))


def event_view(message_type: type[Message]) -> View:
    """How the events a resource's writes announce carry a row: as the API answers it (JSON, every field
    printed, as the edge prints it), less the fields the event catalogue leaves out of that message."""
    name = descriptor_of(message_type).full_name
    omitted = {field for t in EVENT_TYPES.values() if t.data == name for field in t.omitted}

    def view(row: Any) -> dict[str, Any]:
        if omitted:  # not even built: an instance's knowledge may be megabytes
            row = {k: v for k, v in row._mapping.items() if k not in omitted}
        data = json_format.MessageToDict(
            to_message(row, message_type),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
        for field in omitted:
            data.pop(field, None)
        return data

    return view


class ResourceRpcs(Generic[ResourceMessage]):
    """List/Create/Get/Update/Delete of one resource, named as its proto names them (lead / leads)."""

    def __init__(
        self,
        service: ResourceService,
        *,
        message: type[ResourceMessage],
        input_message: type[Message],
        singular: str,
        plural: str,
        id_field: str = "id",
    ) -> None:
        self.service = service
        self._message = message
        self._input = descriptor_of(input_message)
        self._singular = singular
        self._plural = plural
        self._id_field = id_field

    def message(self, row: Any) -> ResourceMessage:
        return message_from(row, self._message)

    def _answer(self, row: Any, response: type[Response], *, read: bool = False) -> Response:
        """The response: the resource itself (HydraCore), or wrapped as {singular: resource} (Support),
        with its ETag."""
        resource = self.message(row)
        answer_version(resource, read=read)
        if response is self._message:
            return cast(Response, resource)
        return response(**{self._singular: resource})

    def _still_at(self, row: Any) -> None:
        """Refuses a write the request's If-Match makes conditional on another version of `row`."""
        require_match(lambda: self.message(row))

    def _id(self, request: Any) -> Any:
        return parse_path_id(
            getattr(request, self._id_field), param=self._id_field, not_found=self.service.not_found
        )

    async def list(
        self, request: Any, response: type[Response], filters: Mapping[str, Any] | None = None
    ) -> Response:
        page = await self.service.list(
            current_identity(),
            limit=_query(request, "limit"),
            filters=filters,
            cursor=_query(request, "cursor"),
            since=since(request),
        )
        return page_response(
            response, page, plural=self._plural, message=self.message, cursor=self.service.cursor
        )

    async def create(self, request: Any, response: type[Response], scope: Scope = None) -> Response:
        fields = parse_input(getattr(request, self._singular), self._input, partial=False)
        row = await self.service.create(current_identity(), {**fields, **(scope or {})})
        return self._answer(row, response)

    async def get(self, request: Any, response: type[Response], scope: Scope = None) -> Response:
        row = await self.service.get(current_identity(), self._id(request), scope=scope)
        return self._answer(row, response, read=True)

    async def update(self, request: Any, response: type[Response], scope: Scope = None) -> Response:
        row_id = self._id(request)
        fields = parse_input(getattr(request, self._singular), self._input, partial=True)
        row = await self.service.update(current_identity(), row_id, fields, scope=scope, check=self._still_at)
        return self._answer(row, response)

    async def delete(self, request: Any, response: type[Response], scope: Scope = None) -> Response:
        await self.service.delete(current_identity(), self._id(request), scope=scope, check=self._still_at)
        return response()


# A list's ?updated_since= and ?created_since= (RFC 3339), and the columns they bound.
SINCE_PARAMETERS = {"updated_since": "updated_at", "created_since": "created_at"}


def since(request: Any) -> dict[str, Any]:
    """The moments a list request bounds its rows by, by column (those it takes and was given)."""
    return {
        column: query_moment(_query(request, name), name)
        for name, column in SINCE_PARAMETERS.items()
        if _query(request, name) is not None
    }


def _query(request: Any, name: str) -> Any:
    """A query parameter of a list, or None when absent (or when the list takes no such parameter)."""
    return optional_query(request, name) if name in request.DESCRIPTOR.fields_by_name else None


def page_response(
    response: type[Response],
    page: Page,
    *,
    plural: str,
    message: Callable[[Any], Message],
    cursor: Callable[[Any], str],
) -> Response:
    """A list answer: the rows that fit one page at the edge, and where the next page starts.

    Lists whose response has no next_cursor (the Support API's) end at the page.
    """
    messages = [message(row) for row in page.rows]
    count = fitting(messages)
    fields: dict[str, Any] = {plural: messages[:count], "count": count}
    if (page.more or count < len(messages)) and "next_cursor" in response.DESCRIPTOR.fields_by_name:
        fields["next_cursor"] = cursor(page.rows[count - 1])
    return response(**fields)
