"""Each deployment's MCP endpoint (/v1/mcp/{deploymentId}): its workflows as MCP prompts and a tool
returning a workflow's steps, served by the official SDK over Streamable HTTP.

Every request is checked here before the SDK sees it: the deployment exists and is active, the caller
may connect (anonymous when allowed, else the owner's ID token as the edge verified it, or a key of the
deployment), and the client's adapter is enabled. A new session counts against the owner's monthly
allowance. Nothing stays open between requests (answers are JSON, no server-sent stream), so a
deployment deleted or deactivated refuses its clients' very next message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.parse
from collections import OrderedDict
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from services.common.asgi import Receive, Scope, Send, read_body, replay, request_headers
from services.common.errors import (
    FieldError,
    Forbidden,
    HydraError,
    NotFound,
    Unauthenticated,
    ValidationError,
)
from services.common.surfaces import ID_TOKEN, MARKETPLACE, REQUEST_ID_HEADER, render
from services.workflows.deployments import DEPLOYMENT_NOT_FOUND, DeploymentService, Served

PATH_PREFIX = "/v1/mcp/"
STEPS_TOOL = "get_workflow_steps"
SESSION_HEADER = "mcp-session-id"
MAX_BODY_BYTES = 1024 * 1024
_MOST_SESSIONS = 100_000
# How clients name themselves in initialize's clientInfo, by adapter.
_CLIENT_NAMES = {"claude": "claude", "cursor": "cursor", "codex": "codex"}


def adapter_of(query_adapter: str | None, client_name: str) -> str | None:
    """The adapter a client connects as: ?adapter=, else what its clientInfo name says."""
    if query_adapter:
        return query_adapter if query_adapter in _CLIENT_NAMES else None
    lowered = client_name.lower()
    return next((adapter for word, adapter in _CLIENT_NAMES.items() if word in lowered), None)


class DeploymentEndpoint:
    """The ASGI app behind every deployment's MCP endpoint."""

    def __init__(self, deployments: DeploymentService, logger: logging.Logger) -> None:
        self._deployments = deployments
        self._log = logger
        self._sessions: OrderedDict[str, tuple[str, str]] = OrderedDict()  # id -> deployment, adapter
        self._server: Server[Any, Any] = Server("hydra-workflows")
        self._register(self._server)
        self._manager = StreamableHTTPSessionManager(self._server, json_response=True, stateless=False)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The SDK's session manager, for as long as the endpoint serves."""
        async with self._manager.run():
            yield

    async def cut(self, deployment_id: str) -> None:
        """Forgets a deployment's sessions: their next message is refused."""
        for session_id, (deployment, _adapter) in list(self._sessions.items()):
            if deployment == deployment_id:
                del self._sessions[session_id]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            receive = await self._admit(scope, receive)
        except HydraError as error:
            await _error(send, error, request_headers(scope).get(REQUEST_ID_HEADER))
            return
        await self._manager.handle_request(scope, receive, self._capture_session(scope, send))

    async def _admit(self, scope: Scope, receive: Receive) -> Receive:
        """Checks a request; returns how to read its body again (the SDK reads it too)."""
        deployment_id = scope["path"].removeprefix(PATH_PREFIX).strip("/")
        deployment = await self._deployments.served(deployment_id)
        if deployment is None:
            raise NotFound(DEPLOYMENT_NOT_FOUND)
        if deployment.status != "active":
            raise Forbidden("This deployment is inactive: its owner can activate it again.")
        headers = request_headers(scope)
        await self._authorize(deployment, headers)
        if scope["method"] == "GET":
            raise _NoStream()
        body = await read_body(receive, MAX_BODY_BYTES)
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        session_id = headers.get(SESSION_HEADER)
        if session_id:
            known = self._sessions.get(session_id)
            if known is None or known[0] != deployment.id:
                raise NotFound("Session not found: initialize a new one.")
            adapter = known[1]
        else:
            adapter = self._adapter(query, body)
        if adapter not in deployment.enabled_adapters:
            raise Forbidden(f"The {adapter} adapter is disabled for this deployment.")
        if not session_id and _is_initialize(body):
            await self._deployments.connect(deployment, adapter)
            scope.setdefault("state", {})["hydra_session"] = (deployment.id, adapter)
        return replay(body, receive)

    async def _authorize(self, deployment: Served, headers: dict[str, str]) -> None:
        """Anonymous when allowed; else the owner's verified ID token, or a key of this deployment."""
        subject = headers.get(ID_TOKEN.verified_subject or "", "")
        if subject:  # a token the edge verified: it must be the owner's
            if await self._deployments.user_of(subject) == deployment.user_id:
                return
            raise Forbidden("This ID token's user does not own this deployment.")
        key = headers.get("x-api-key", "")
        if key:
            if await self._deployments.holds_key(deployment.id, key):
                return
            raise Unauthenticated("Invalid or revoked deployment key.")
        if not deployment.allow_anonymous:
            raise Unauthenticated(
                "Send the owner's ID token as 'Authorization: Bearer <ID token>', "
                "or a deployment key as X-Api-Key."
            )

    def _adapter(self, query: dict[str, list[str]], body: bytes) -> str:
        client_name = ""
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            client_name = str(json.loads(body)["params"]["clientInfo"]["name"])
        adapter = adapter_of(next(iter(query.get("adapter", [])), None), client_name)
        if adapter is None:
            raise ValidationError(
                FieldError(("query", "adapter"), "Name the client: ?adapter=claude, cursor or codex", "enum")
            )
        return adapter

    def _capture_session(self, scope: Scope, send: Send) -> Send:
        """Remembers the session a successful initialize opened, with its deployment and adapter."""
        opened = scope.get("state", {}).get("hydra_session")
        if opened is None:
            return send

        async def capture(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                for name, value in message.get("headers", []):
                    if name.decode("latin-1").lower() == SESSION_HEADER:
                        self._sessions[value.decode("latin-1")] = opened
                        while len(self._sessions) > _MOST_SESSIONS:
                            self._sessions.popitem(last=False)
            await send(message)

        return capture

    def _deployment_of_request(self) -> str:
        request = self._server.request_context.request
        path = getattr(request, "url", None)
        return str(path.path).removeprefix(PATH_PREFIX).strip("/") if path is not None else ""

    async def _served(self) -> Served:
        deployment = await self._deployments.served(self._deployment_of_request())
        if deployment is None:
            raise ValueError(DEPLOYMENT_NOT_FOUND)
        return deployment

    def _register(self, server: Server[Any, Any]) -> None:
        @server.list_prompts()  # type: ignore[misc,no-untyped-call]
        async def list_prompts() -> list[types.Prompt]:
            deployment = await self._served()
            return [_prompt(workflow) for workflow in deployment.workflows]

        @server.get_prompt()  # type: ignore[misc,no-untyped-call]
        async def get_prompt(name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
            workflow = _find(await self._served(), name)
            return types.GetPromptResult(
                description=workflow.description or workflow.name,
                messages=[
                    types.PromptMessage(
                        role="user",
                        content=types.TextContent(type="text", text=_instructions(workflow, arguments or {})),
                    )
                ],
            )

        @server.list_tools()  # type: ignore[misc,no-untyped-call]
        async def list_tools() -> list[types.Tool]:
            deployment = await self._served()
            return [
                types.Tool(
                    name=STEPS_TOOL,
                    description=(
                        "The steps of one of this deployment's workflows, in order, with their instructions."
                    ),
                    inputSchema={
                        "type": "object",
                        "properties": {
                            "workflow": {
                                "type": "string",
                                "description": "The workflow's id (wf_...) or name.",
                                "enum": [w.workflow_id for w in deployment.workflows],
                            }
                        },
                        "required": ["workflow"],
                        "additionalProperties": False,
                    },
                    annotations=types.ToolAnnotations(readOnlyHint=True, idempotentHint=True),
                )
            ]

        @server.call_tool()  # type: ignore[misc,no-untyped-call]
        async def call_tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
            if name != STEPS_TOOL:
                raise ValueError(f"Unknown tool: {name}")
            workflow = _find(await self._served(), str(arguments.get("workflow", "")))
            return {
                "workflowId": workflow.workflow_id,
                "name": workflow.name,
                "version": workflow.version,
                "inputs": workflow.manifest.get("inputs", []),
                "steps": workflow.manifest.get("steps", []),
            }


class _NoStream(HydraError):
    """This endpoint answers each request in JSON; it opens no server-sent stream."""

    code = "method_not_allowed"
    http_status = 405

    def __init__(self) -> None:
        super().__init__("This endpoint answers in JSON and offers no event stream: use POST.")


def _find(deployment: Served, name: str) -> Any:
    for workflow in deployment.workflows:
        if name in (workflow.workflow_id, workflow.name):
            return workflow
    raise ValueError(f"No workflow {name!r} in this deployment.")


def _prompt(workflow: Any) -> types.Prompt:
    return types.Prompt(
        name=workflow.workflow_id,
        title=workflow.name,
        description=workflow.description or workflow.name,
        arguments=[
            types.PromptArgument(
                name=item["name"], description=item.get("description"), required=bool(item.get("required"))
            )
            for item in workflow.manifest.get("inputs", [])
        ],
    )


def _instructions(workflow: Any, arguments: dict[str, str]) -> str:
    """The workflow as one message to an agent: its inputs, then each step in order."""
    lines = [f'Follow the workflow "{workflow.name}" (version {workflow.version}).']
    if workflow.description:
        lines.append(workflow.description)
    for item in workflow.manifest.get("inputs", []):
        value = arguments.get(item["name"], item.get("default", ""))
        lines.append(f"Input {item['name']}: {value}")
    for number, step in enumerate(workflow.manifest.get("steps", []), start=1):
        lines.append(f"{number}. {step['name']}: {step['instructions']}")
    return "\n".join(lines)


def _is_initialize(body: bytes) -> bool:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        return json.loads(body).get("method") == "initialize"
    return False


async def _error(send: Send, error: HydraError, request_id: str | None) -> None:
    rendered = render(error, MARKETPLACE, request_id)
    headers = [(b"content-type", b"application/json")]
    if isinstance(error, _NoStream):
        headers.append((b"allow", b"POST, DELETE"))
    await send({"type": "http.response.start", "status": rendered.http_status, "headers": headers})
    await send({"type": "http.response.body", "body": rendered.body.encode()})
