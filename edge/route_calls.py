"""A tool call as the route it stands for: the arguments become the route's gRPC request (path and query
fields, the JSON body as its Struct), sent to the route's service with the caller's tenant, key and
scopes, exactly as the edge would send the HTTP request; the answer comes back as the route's JSON."""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory, struct_pb2
from google.protobuf.message import Message

from edge.bindings import DESCRIPTOR_SET
from edge.tools import Tool
from services.common import tracing
from services.common.channels import CLIENT_OPTIONS, MAX_MESSAGE_BYTES, internal_metadata
from services.common.surfaces import REQUEST_ID_HEADER


@dataclass(frozen=True)
class Caller:
    """Whom a call acts for: the key's tenant, id and scopes."""

    tenant_id: str
    key_id: str
    scopes: Sequence[str]
    request_id: str | None = None  # the edge's id of the HTTP request the call serves


@dataclass(frozen=True)
class RouteError(Exception):
    """The service refused the call: the HTTP status and the body the route would have answered."""

    http_status: int
    body: dict[str, Any]

    def __str__(self) -> str:
        return json.dumps(self.body)


class RouteCalls:
    """Calls routes' RPCs over gRPC, one channel per service cluster."""

    def __init__(
        self,
        addresses: Mapping[str, str],
        *,
        internal_token: str | None = None,
        timeout: float = 15.0,
        descriptor_set: Path = DESCRIPTOR_SET,
    ) -> None:
        _import_protos(descriptor_set)
        self._channels = {
            cluster: grpc.aio.insecure_channel(
                address,
                options=[*CLIENT_OPTIONS, ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)],
                interceptors=tracing.client_interceptors(),
            )
            for cluster, address in addresses.items()
        }
        self._token = internal_token
        self._timeout = timeout
        self._pool = descriptor_pool.Default()  # type: ignore[no-untyped-call]

    def request(self, tool: Tool, arguments: Mapping[str, Any]) -> Message:
        """The route's gRPC request for these (schema-checked) arguments."""
        method = self._method(tool)
        request = message_factory.GetMessageClass(method.input_type)()
        for name, value in arguments.items():
            if name == tool.body:
                body = getattr(request, name)
                if isinstance(body, struct_pb2.Struct):
                    body.update(value)
                else:
                    json_format.ParseDict(value, body)
            else:
                setattr(request, name, value)
        return request

    async def call(self, tool: Tool, arguments: Mapping[str, Any], caller: Caller) -> dict[str, Any]:
        """Calls the route for `caller`; its answer as JSON, or RouteError with the route's error body."""
        method = self._method(tool)
        request = self.request(tool, arguments)
        response_class = message_factory.GetMessageClass(method.output_type)
        rpc: Any = self._channels[tool.binding.cluster].unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        metadata = internal_metadata(
            caller.tenant_id, caller.scopes, caller.key_id, internal_token=self._token
        )
        if caller.request_id:  # the service logs the call and names its errors by it
            metadata = (*metadata, (REQUEST_ID_HEADER, caller.request_id))
        try:
            response = await rpc(request, metadata=metadata, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            trailers = {k: v for k, v in error.trailing_metadata() or () if isinstance(v, str)}
            body = trailers.get("x-error-body")
            status = int(trailers.get("x-http-status") or 503)
            raise RouteError(status, json.loads(body) if body else {"detail": error.details()}) from None
        return json_format.MessageToDict(
            response,
            preserving_proto_field_name=not tool.binding.access.surface.json_names,
            always_print_fields_with_no_presence=True,
        )

    def _method(self, tool: Tool) -> Any:
        return self._pool.FindMethodByName(tool.binding.rpc)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()


def _import_protos(descriptor_set: Path) -> None:
    """Imports the generated module of every hydra proto, so each message type is in the default pool."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    for file in files:
        if file.name.startswith("hydra/"):
            importlib.import_module(file.name.removesuffix(".proto").replace("/", ".") + "_pb2")
