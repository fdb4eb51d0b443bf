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

from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from edge.gatekeeper.authorizer import Authorizer, RouteAccess
from edge.gatekeeper.call_log import CallLog
from edge.gatekeeper.confirmations import Confirmations, Pending, Refused
from edge.route_calls import Caller, RouteCalls, RouteError
from edge.tools import Dependent, Tool, visible
from services.common.asgi import Receive, Scope, Send, read_body, replay, request_headers
from services.common.errors import ValidationError
from services.common.identity import CLIENT_IP_HEADER, KEY_HEADER, SCOPES_HEADER, TENANT_HEADER
from services.common.surfaces import CORE, REQUEST_ID_HEADER, SUPPORT, Surface, render

_CALLER = "hydra_caller"
SERVER_VERSION = "1.0.0"
UNKNOWN_TOOL = "(unknown)"
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
        # A version given: the SDK would otherwise read its own package's metadata on every request.
        self._server: Server[Any, Any] = Server(f"hydra-{surface.name}", version=SERVER_VERSION)
        self._listed = {tool.name: _listed(tool) for tool in tools}
        # Each tool's input schema compiled once (the SDK's own check recompiles it on every call).
        self._validators = {
            tool.name: validator_for(tool.input_schema)(tool.input_schema) for tool in self._tools.values()
        }
        self._register(self._server)
        self._manager = StreamableHTTPSessionManager(self._server, json_response=True, stateless=True)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with self._manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = request_headers(scope)
        request_id = headers.get(REQUEST_ID_HEADER)
        try:
            body = await read_body(receive, MAX_BODY_BYTES)
        except ValidationError as too_large:
            rendered = render(too_large, self._surface, request_id)
            await _answer(send, rendered.http_status, json.loads(rendered.body))
            return
        message = _rpc_message(body) if scope["method"] == "POST" else None
        if message is not None and not ("id" in message and "method" in message):
            # A notification or a client's answer: a stateless server has nothing to do with either.
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        client = headers.get(CLIENT_IP_HEADER, "")
        admission = await self._authorizer.admit(self._route, headers, scope["path"], client=client)
        rate = [(k.encode(), v.encode()) for k, v in admission.rate_headers.items()]
        if admission.error is not None:
            rendered = render(admission.error, self._surface, request_id)
            if message is None:
                await _answer(send, rendered.http_status, json.loads(rendered.body), rate)
                return
            # An MCP request is answered in MCP: a JSON-RPC error the client hands to its agent, with the
            # surface's error and when to retry (an HTTP error status would end the client's session).
            retry = admission.rate_headers.get(self._surface.rate_headers[2])
            data: dict[str, Any] = {"status": rendered.http_status, "error": json.loads(rendered.body)}
            if retry is not None:
                data["retry_after_seconds"] = int(retry)
            error = {
                "code": _RPC_ERROR_CODES.get(rendered.http_status, -32000),
                "message": rendered.message,
                "data": data,
            }
            await _answer(send, 200, {"jsonrpc": "2.0", "id": message["id"], "error": error}, rate)
            return
        identity = admission.identity
        scope.setdefault("state", {})[_CALLER] = Caller(
            identity[TENANT_HEADER], identity[KEY_HEADER], identity[SCOPES_HEADER].split(), request_id
        )

        async def send_with_rate(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *rate]}
            await send(message)

        await self._manager.handle_request(scope, replay(body, receive), send_with_rate)

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
            listed = [self._listed[tool.name] for tool in opened]
            if any(tool.writes for tool in opened):
                listed.append(CONFIRM_TOOL)
            return listed

        @server.call_tool(validate_input=False)  # type: ignore[untyped-decorator]
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
                    invalid = best_match(self._validators[name].iter_errors(arguments))
                    if invalid is not None:
                        raise ValueError(f"Input validation error: {invalid.message}")
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
                # Only names the server defines reach the log, never a string the client made up.
                logged = name if name == CONFIRM_TOOL.name or name in self._tools else UNKNOWN_TOOL
                await self._log_call(caller, logged, scope, (time.perf_counter() - started) * 1000, status)

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
        """The row a change or delete would touch, read as the caller; None where there is no read
        route for it or the key may not read it."""
        reader = self._readers.get(tool.binding.template)
        if reader is None or reader not in visible([reader], caller.scopes):
            return None
        return await self._calls.call(reader, _target(tool, arguments), caller)

    async def _preview(self, tool: Tool, arguments: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """What a write would do, and the token that applies it; nothing changes."""
        method = tool.binding.method
        preview: dict[str, Any] = {"tool": tool.name, "would": f"{method} {tool.binding.template}"}
        current = None
        if method == "POST":
            preview["creates"] = arguments.get(tool.body) if tool.body else arguments
        else:
            current = await self._current(tool, arguments, caller)
            if current is None:
                preview["target"] = _target(tool, arguments)
        if method == "DELETE":
            preview["deletes"] = current if current is not None else _target(tool, arguments)
            touched = {name: await self._dependent_rows(dep, arguments, caller) for name, dep in _named(tool)}
            if touched:
                preview["dependents"] = touched
            blockers = {
                name: rows.get("count", 0) for name, rows in touched.items() if rows["effect"] == "blocks"
            }
            if any(blockers.values()):
                preview["blocked_by"] = blockers
                return {
                    "preview": preview,
                    "blocked": "The delete would be refused while these remain: reassign or delete them, "
                    "then preview the delete again.",
                }
        elif method != "POST":
            row = _row(current) if current is not None else None
            changes = (arguments.get(tool.body) if tool.body else None) or {}
            preview["changes"] = {
                field: {"from": row.get(field), "to": value} if row is not None else {"to": value}
                for field, value in changes.items()
                if row is None or row.get(field) != value
            }
        token = await self._confirmations.issue(caller.key_id, tool.name, arguments, _version(current))
        return {
            "preview": preview,
            "confirmation_token": token,
            "expires_in_seconds": int(self._confirmations.valid_for.total_seconds()),
            "to_apply": "call the confirm tool with this token",
        }

    async def _dependent_rows(
        self, dependent: Dependent, arguments: Mapping[str, Any], caller: Caller
    ) -> dict[str, Any]:
        """The rows a delete touches, as far as the caller may read them (their ids, a page at most)."""
        lister = self._tools[dependent.list_tool]
        if lister not in visible([lister], caller.scopes):
            return {"effect": dependent.effect, "unknown": f"this key lacks {lister.scope} to list them"}
        limit = lister.input_schema["properties"].get("limit", {}).get("maximum", 100)
        answer = await self._calls.call(
            lister, {dependent.filter: arguments[dependent.id_field], "limit": limit}, caller
        )
        rows = next((v for v in answer.values() if isinstance(v, list)), [])
        more = bool(answer.get("next_cursor") or answer.get("nextCursor")) or len(rows) >= limit
        return {
            "effect": dependent.effect,
            "count": len(rows),
            "more": more,
            "ids": [row.get("id") for row in rows],
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


def _listed(tool: Tool) -> types.Tool:
    """A tool as tools/list shows it."""
    return types.Tool(
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


# JSON-RPC error codes (the implementation-defined range) of the edge's refusals, by HTTP status.
_RPC_ERROR_CODES = {401: -32001, 403: -32003, 429: -32029}
MAX_BODY_BYTES = 4 * 1024 * 1024


def _rpc_message(body: bytes) -> dict[str, Any] | None:
    """The body's JSON-RPC message (a request, notification or response), or None for anything else."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return None
    if "id" in message and not isinstance(message["id"], str | int):
        return None
    return message


async def _answer(
    send: Send, status: int, body: Mapping[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def _target(tool: Tool, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments naming the row (the path's), without the body."""
    return {k: v for k, v in arguments.items() if k != tool.body}


def _named(tool: Tool) -> list[tuple[str, Dependent]]:
    """A delete's dependents, each by the name of what its list tool lists (list_contacts: contacts)."""
    return [(dep.list_tool.removeprefix("list_"), dep) for dep in tool.dependents]


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
