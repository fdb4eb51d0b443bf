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
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from edge.gatekeeper.authorizer import Authorizer, RouteAccess
from edge.gatekeeper.call_log import CallLog
from edge.gatekeeper.confirmations import VALID_FOR, Confirmations, Pending, Refused
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
        *,
        authorizer: Authorizer,
        calls: RouteCalls,
        confirmations: Confirmations,
        call_log: CallLog,
        logger: logging.Logger,
    ) -> None:
        self._call_log = call_log
        self._surface = surface
        self._tools = {tool.name: tool for tool in tools}
        self._confirmations = confirmations
        # The read of the row a write changes: the GET tool of the same path.
        self._readers = {t.binding.template: t for t in tools if t.binding.method == "GET"}
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
            opened = visible(self._tools.values(), self._caller().scopes)
            listed = [
                types.Tool(
                    name=tool.name,
                    title=tool.title,
                    description=tool.description
                    + (
                        " Answers a preview and a confirmation token; nothing changes until confirm."
                        if tool.writes
                        else ""
                    ),
                    inputSchema=tool.input_schema,
                    annotations=types.ToolAnnotations(
                        readOnlyHint=tool.annotations["readOnlyHint"],
                        destructiveHint=tool.annotations["destructiveHint"],
                        idempotentHint=tool.annotations["idempotentHint"],
                    ),
                )
                for tool in opened
            ]
            if any(tool.writes for tool in opened):
                listed.append(CONFIRM_TOOL)
            return listed

        @server.call_tool()  # type: ignore[untyped-decorator]
        async def call_tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
            caller = self._caller()
            started = time.perf_counter()
            scope, status = "", "error"
            try:
                if name == CONFIRM_TOOL.name:
                    tool, pending = await self._redeem(str(arguments.get("token", "")), caller)
                    scope = tool.scope
                    answer = await self._confirm(tool, pending, caller)
                else:
                    tool = self._tools.get(name)  # type: ignore[assignment]
                    if tool is None or tool not in visible([tool], caller.scopes):
                        raise ValueError(f"Unknown tool: {name}")
                    scope = tool.scope
                    answer = (
                        await self._preview(tool, arguments, caller)
                        if tool.writes
                        else await self._calls.call(tool, arguments, caller)
                    )
                status = "ok"
                return answer
            except RouteError as refused:
                raise ValueError(json.dumps(refused.body)) from None
            except Refused as refused:
                status = "refused"
                raise ValueError(str(refused)) from None
            finally:
                await self._log_call(caller, name, scope, (time.perf_counter() - started) * 1000, status)

    async def _log_call(self, caller: Caller, tool: str, scope: str, latency_ms: float, status: str) -> None:
        """One row of the call log (nothing of the arguments or the answer); a failure to write it is
        logged, never the caller's problem."""
        try:
            await self._call_log.record(
                tenant_id=caller.tenant_id,
                key_id=caller.key_id,
                surface=self._surface.name,
                tool=tool,
                scope=scope,
                latency_ms=latency_ms,
                status=status,
            )
        except Exception as error:
            self._log.warning("call log write failed", extra={"error": type(error).__name__})

    async def _current(
        self, tool: Tool, arguments: Mapping[str, Any], caller: Caller
    ) -> dict[str, Any] | None:
        """The row a write would change, read as the caller; None for a create."""
        reader = self._readers.get(tool.binding.template)
        if reader is None or tool.binding.method == "POST":
            return None
        return await self._calls.call(reader, {k: v for k, v in arguments.items() if k != tool.body}, caller)

    async def _preview(self, tool: Tool, arguments: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """What a write would do, and the token that applies it; nothing changes."""
        current = await self._current(tool, arguments, caller)
        preview: dict[str, Any] = {
            "tool": tool.name,
            "would": f"{tool.binding.method} {tool.binding.template}",
        }
        if current is None:
            preview["creates"] = arguments.get(tool.body or "", arguments)
        elif tool.binding.method == "DELETE":
            preview["deletes"] = current
        else:
            row = _row(current)
            preview["changes"] = {
                field: {"from": row.get(field), "to": value}
                for field, value in (arguments.get(tool.body or "") or {}).items()
                if row.get(field) != value
            }
        token = await self._confirmations.issue(caller.key_id, tool.name, arguments, _version(current))
        return {
            "preview": preview,
            "confirmation_token": token,
            "expires_in_seconds": int(VALID_FOR.total_seconds()),
            "to_apply": "call the confirm tool with this token",
        }

    async def _redeem(self, token: str, caller: Caller) -> tuple[Tool, Pending]:
        """The write a token confirms, if the key may still make it."""
        pending = await self._confirmations.redeem(token, caller.key_id)
        tool = self._tools.get(pending.tool)
        if tool is None or tool not in visible([tool], caller.scopes):
            raise Refused(f"The key may no longer call {pending.tool}.")
        return tool, pending

    async def _confirm(self, tool: Tool, pending: Pending, caller: Caller) -> dict[str, Any]:
        """Applies a previewed write once, if the row is as it was previewed."""
        if pending.version is not None:
            current = await self._current(tool, pending.arguments, caller)
            if _version(current) != pending.version:
                raise Refused("The row changed since the preview: preview the change again.")
        return await self._calls.call(tool, pending.arguments, caller)


CONFIRM_TOOL = types.Tool(
    name="confirm",
    title="Apply a previewed change",
    description=(
        "Applies the change a write tool previewed, once. The token is the caller's own, for the exact "
        "arguments previewed and the row as it was then; it expires after a few minutes."
    ),
    inputSchema={
        "type": "object",
        "properties": {"token": {"type": "string", "maxLength": 100}},
        "required": ["token"],
        "additionalProperties": False,
    },
    annotations=types.ToolAnnotations(readOnlyHint=False, destructiveHint=True, idempotentHint=False),
)


def _row(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    """The resource in a route's answer: itself, or the one object it is wrapped in ({"lead": {...}})."""
    values = list(answer.values())
    if len(values) == 1 and isinstance(values[0], dict):
        return values[0]
    return answer


def _version(answer: Mapping[str, Any] | None) -> str | None:
    """When the row last changed (its updated_at), or None."""
    if answer is None:
        return None
    row = _row(answer)
    stamp = row.get("updated_at", row.get("updatedAt"))
    return str(stamp) if stamp is not None else None


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
