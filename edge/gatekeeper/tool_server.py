"""The Support and HydraCore APIs as MCP servers (the official SDK, Streamable HTTP): each route a
tool (edge/tools.py), listed as far as the key's scopes open them, called over gRPC as the route
(edge/route_calls.py).

Every request is the key's like an HTTP request: checked by the authorizer (key, then the key's own
window), refused in the surface's envelope with its rate-limit headers. Answers are JSON and no session is
kept, so any gatekeeper replica answers any request.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from edge.gatekeeper.authorizer import Authorizer, RouteAccess
from edge.route_calls import Caller, RouteCalls, RouteError
from edge.tools import Tool, visible
from services.common.identity import CLIENT_IP_HEADER, KEY_HEADER, SCOPES_HEADER, TENANT_HEADER
from services.common.surfaces import CORE, SUPPORT, Surface, render

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
_CALLER = "hydra_caller"
# Where each keyed surface's MCP server answers.
TOOL_PATHS = {"/api/mcp/v1": SUPPORT, "/v1/mcp": CORE}


class ToolServer:
    """One surface's MCP endpoint."""

    def __init__(
        self,
        surface: Surface,
        tools: list[Tool],
        authorizer: Authorizer,
        calls: RouteCalls,
        logger: logging.Logger,
    ) -> None:
        self._surface = surface
        self._tools = {tool.name: tool for tool in tools}
        self._authorizer = authorizer
        self._calls = calls
        self._log = logger
        (credential,) = [c for c in surface.credentials if c.key_kind is not None]
        self._route = RouteAccess(surface=surface, credential=credential)
        self._server: Server[Any, Any] = Server(f"hydra-{surface.name}")
        self._register(self._server)
        self._manager = StreamableHTTPSessionManager(self._server, json_response=True, stateless=True)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self._manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = headers.get(CLIENT_IP_HEADER, "")
        admission = await self._authorizer.admit(self._route, headers, scope["path"], client=client)
        if admission.error is not None:
            rendered = render(admission.error, self._surface)
            response_headers = [(b"content-type", b"application/json")]
            response_headers += [(k.encode(), v.encode()) for k, v in admission.rate_headers.items()]
            await send(
                {"type": "http.response.start", "status": rendered.http_status, "headers": response_headers}
            )
            await send({"type": "http.response.body", "body": rendered.body.encode()})
            return
        identity = admission.identity
        scope.setdefault("state", {})[_CALLER] = Caller(
            identity[TENANT_HEADER], identity[KEY_HEADER], identity[SCOPES_HEADER].split()
        )
        rate = [(k.encode(), v.encode()) for k, v in admission.rate_headers.items()]

        async def send_with_rate(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *rate]}
            await send(message)

        await self._manager.handle_request(scope, receive, send_with_rate)

    def _caller(self) -> Caller:
        request = self._server.request_context.request
        caller = getattr(getattr(request, "state", None), _CALLER, None)
        if not isinstance(caller, Caller):
            raise ValueError("Missing caller.")
        return caller

    def _register(self, server: Server[Any, Any]) -> None:
        @server.list_tools()  # type: ignore[untyped-decorator,no-untyped-call]
        async def list_tools() -> list[types.Tool]:
            return [
                types.Tool(
                    name=tool.name,
                    title=tool.title,
                    description=tool.description,
                    inputSchema=tool.input_schema,
                    annotations=types.ToolAnnotations(
                        readOnlyHint=tool.annotations["readOnlyHint"],
                        destructiveHint=tool.annotations["destructiveHint"],
                        idempotentHint=tool.annotations["idempotentHint"],
                    ),
                )
                for tool in visible(self._tools.values(), self._caller().scopes)
            ]

        @server.call_tool()  # type: ignore[untyped-decorator]
        async def call_tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
            caller = self._caller()
            tool = self._tools.get(name)
            if tool is None or tool not in visible([tool], caller.scopes):
                raise ValueError(f"Unknown tool: {name}")
            try:
                return await self._calls.call(tool, arguments, caller)
            except RouteError as refused:
                raise ValueError(json.dumps(refused.body)) from None


def by_path(servers: Mapping[str, ToolServer]) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """One ASGI app answering each server's path (a trailing slash or not), 404 elsewhere."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        server = servers.get(str(scope.get("path", "")).rstrip("/"))
        if server is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await server(scope, receive, send)

    return app


@contextlib.asynccontextmanager
async def all_running(servers: Iterable[ToolServer]) -> AsyncIterator[None]:
    """Every server's session manager, for as long as the listener serves."""
    async with contextlib.AsyncExitStack() as stack:
        for server in servers:
            await stack.enter_async_context(server.running())
        yield
