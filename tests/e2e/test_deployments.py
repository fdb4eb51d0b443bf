"""Deployments and their MCP endpoints (seed 002) through the real edge, driven by the MCP SDK's own
client: who may connect, adapters, activation, keys, usage, plan caps, and deletion cutting sessions."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.conftest import Edge, User
from tests.e2e.test_marketplace import create_workflow, edge_plan, error_of, manifest, workflow_body

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
MCP_ACCEPT = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def create_deployment(edge: Edge, user: User, workflow_ids: list[str], **fields: Any) -> dict[str, Any]:
    body = {"name": "Production Deploy", "workflowIds": workflow_ids, **fields}
    response = edge.http.post("/v1/deployments", json=body, headers=user.bearer)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def initialize(client: str = "claude-code") -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": client, "version": "1.0"},
        },
    }


def mcp_post(
    edge: Edge, deployment_id: str, body: Any, headers: Mapping[str, str] = {}, query: str = ""
) -> httpx.Response:
    return edge.http.post(f"/v1/mcp/{deployment_id}{query}", json=body, headers={**MCP_ACCEPT, **headers})


@contextlib.asynccontextmanager
async def mcp_session(
    url: str, headers: Mapping[str, str]
) -> AsyncIterator[tuple[ClientSession, Callable[[], str | None]]]:
    """The SDK's own client, connected to `url` with `headers` on every request."""
    async with (
        httpx.AsyncClient(headers=dict(headers), timeout=10) as http,
        streamable_http_client(url, http_client=http) as (read, write, session_id),
        ClientSession(read, write) as session,
    ):
        yield session, session_id


async def session_calls(url: str, headers: Mapping[str, str]) -> dict[str, Any]:
    """What an MCP client sees: the server's name, prompts, one prompt, the tools and one tool call."""
    async with mcp_session(url, headers) as (session, _):
        init = await session.initialize()
        prompts = (await session.list_prompts()).prompts
        prompt = await session.get_prompt(prompts[0].name, {"repo": "acme/api"})
        tools = (await session.list_tools()).tools
        called = await session.call_tool(tools[0].name, {"workflow": prompts[0].name})
        return {
            "server": init.serverInfo.name,
            "prompts": [(p.name, p.title, [a.name for a in p.arguments or []]) for p in prompts],
            "prompt": prompt.messages[0].content.text,  # type: ignore[union-attr]
            "tools": [(t.name, t.annotations.readOnlyHint if t.annotations else None) for t in tools],
            "called": called.structuredContent,
            "error": called.isError,
        }


def connect(
    edge: Edge, deployment: dict[str, Any], headers: Mapping[str, str], adapter: str = "claude"
) -> dict[str, Any]:
    url = f"{deployment['mcpEndpoint']}?adapter={adapter}"
    return asyncio.run(session_calls(url, headers))


def test_a_deployment_is_created_listed_changed_and_deleted(edge: Edge) -> None:
    owner, other = edge.user(), edge.user()
    mine = create_workflow(edge, owner)["workflowId"]
    public = create_workflow(edge, other, name="Code Review")["workflowId"]
    private = create_workflow(edge, other, name="Secret", visibility="private")["workflowId"]
    refused = edge.http.post(
        "/v1/deployments", json={"name": "D", "workflowIds": [mine, public, private]}, headers=owner.bearer
    )
    error = error_of(refused, 400, "VALIDATION_ERROR")
    assert [e["loc"] for e in error["details"]["errors"]] == [
        ["body", "workflowIds", 1],
        ["body", "workflowIds", 2],
    ]
    edge.http.post(f"/v1/library/{public}", json={"autoUpdate": False}, headers=owner.bearer)
    created = create_deployment(edge, owner, [mine, public, mine], description="Main production workflows")
    assert set(created) == {
        "deploymentId", "name", "description", "workflows", "enabledAdapters", "status", "allowAnonymous",
        "mcpEndpoint", "usage", "createdAt", "updatedAt",
    }  # fmt: skip
    deployment_id = created["deploymentId"]
    assert re.fullmatch(r"dep_[0-9a-f]{16}", deployment_id)
    assert created["mcpEndpoint"] == f"{edge.stack.edge_url}/v1/mcp/{deployment_id}"
    assert created["workflows"] == [
        {"workflowId": mine, "name": "Bug Fix Workflow", "version": "1.0.0", "isOwned": True},
        {"workflowId": public, "name": "Code Review", "version": "1.0.0", "isOwned": False},
    ]
    assert created["enabledAdapters"] == ["claude", "cursor", "codex"] and created["status"] == "active"
    assert created["allowAnonymous"] is False and ISO_Z.match(created["createdAt"])
    assert created["usage"] == {"connectionsThisMonth": 0, "lastConnectedAt": None}
    url = f"/v1/deployments/{deployment_id}"
    assert edge.http.get(url, headers=owner.bearer).json() == {"success": True, "data": created}

    changed = edge.http.put(
        url, json={"name": "Renamed", "description": None, "workflowIds": [public], "allowAnonymous": True},
        headers=owner.bearer,
    ).json()["data"]  # fmt: skip
    assert (
        changed["name"] == "Renamed" and changed["description"] is None and changed["allowAnonymous"] is True
    )
    assert [w["workflowId"] for w in changed["workflows"]] == [public]
    error_of(edge.http.put(url, json={"workflowIds": []}, headers=owner.bearer), 400, "VALIDATION_ERROR")
    error_of(edge.http.put(url, json={"name": "x" * 101}, headers=owner.bearer), 400, "VALIDATION_ERROR")
    adapters = edge.http.post(
        f"{url}/adapters", json={"adapter": "cursor", "enabled": False}, headers=owner.bearer
    )
    assert adapters.json() == {
        "success": True,
        "data": {"deploymentId": deployment_id, "enabledAdapters": ["claude", "codex"]},
    }
    error_of(
        edge.http.post(f"{url}/adapters", json={"adapter": "vim", "enabled": True}, headers=owner.bearer),
        400,
        "VALIDATION_ERROR",
    )
    error_of(
        edge.http.post(f"{url}/adapters", json={"adapter": "codex"}, headers=owner.bearer),
        400,
        "VALIDATION_ERROR",
    )
    assert edge.http.post(f"{url}/deactivate", headers=owner.bearer).json()["data"]["status"] == "inactive"
    inactive = edge.http.get("/v1/deployments?status=inactive", headers=owner.bearer).json()["data"]
    assert [d["deploymentId"] for d in inactive] == [deployment_id]
    assert edge.http.get("/v1/deployments?status=active", headers=owner.bearer).json()["data"] == []
    assert edge.http.post(f"{url}/activate", headers=owner.bearer).json()["data"]["status"] == "active"
    error_of(edge.http.get("/v1/deployments?status=paused", headers=owner.bearer), 400, "VALIDATION_ERROR")

    for method, path in (
        ("GET", url),
        ("PUT", url),
        ("DELETE", url),
        ("POST", f"{url}/activate"),
        ("GET", f"{url}/usage"),
    ):
        error_of(
            edge.http.request(method, path, json={} if method == "PUT" else None, headers=other.bearer),
            404,
            "NOT_FOUND",
        )
    assert edge.http.get("/v1/deployments", headers=other.bearer).json()["data"] == []

    deleted = edge.http.delete(url, headers=owner.bearer)
    assert deleted.json() == {"success": True, "data": {"deploymentId": deployment_id, "deleted": True}}
    error_of(edge.http.get(url, headers=owner.bearer), 404, "NOT_FOUND")
    error_of(edge.http.get("/v1/deployments/dep_nope", headers=owner.bearer), 404, "NOT_FOUND")


def test_the_endpoint_serves_the_workflows_to_the_owner_a_key_or_anyone_when_allowed(edge: Edge) -> None:
    owner, stranger = edge.user(), edge.user()
    body = workflow_body(manifest={**manifest(), "inputs": [{"name": "repo", "required": True}]})
    workflow_id = edge.http.post("/v1/workflows", json=body, headers=owner.bearer).json()["data"][
        "workflowId"
    ]
    deployment = create_deployment(edge, owner, [workflow_id])
    seen = connect(edge, deployment, owner.bearer)
    assert seen["server"] == "hydra-workflows"
    assert seen["prompts"] == [(workflow_id, "Bug Fix Workflow", ["repo"])]
    assert "Input repo: acme/api" in seen["prompt"] and "1. Find: Do find." in seen["prompt"]
    assert seen["tools"] == [("get_workflow_steps", True)]
    assert seen["called"]["steps"] == manifest()["steps"] and seen["error"] is False

    deployment_id = deployment["deploymentId"]
    key = edge.http.post(f"/v1/deployments/{deployment_id}/keys", json={"name": "ci"}, headers=owner.bearer)
    assert key.status_code == 201, key.text
    secret = key.json()["data"]["key"]
    assert secret.startswith("dk_") and key.json()["data"]["name"] == "ci"
    assert connect(edge, deployment, {"X-Api-Key": secret}, adapter="cursor")["prompts"][0][0] == workflow_id

    # Refusals, each in the marketplace's envelope.
    error_of(mcp_post(edge, deployment_id, initialize()), 401, "UNAUTHORIZED")
    error_of(mcp_post(edge, deployment_id, initialize(), {"X-Api-Key": "dk_forged"}), 401, "UNAUTHORIZED")
    error_of(mcp_post(edge, deployment_id, initialize(), stranger.bearer), 403, "FORBIDDEN")
    error_of(
        mcp_post(edge, deployment_id, initialize(), {"Authorization": "Bearer x.y.z"}), 401, "UNAUTHORIZED"
    )
    error_of(
        mcp_post(edge, deployment_id, initialize("my-own-client"), owner.bearer), 400, "VALIDATION_ERROR"
    )
    error_of(mcp_post(edge, "dep_0000000000000000", initialize(), owner.bearer), 404, "NOT_FOUND")
    error_of(edge.http.get(f"/v1/mcp/{deployment_id}", headers=owner.bearer), 405, "METHOD_NOT_ALLOWED")
    revoked = edge.http.delete(
        f"/v1/deployments/{deployment_id}/keys/{key.json()['data']['keyId']}", headers=owner.bearer
    )
    assert revoked.status_code == 200 and revoked.json()["data"]["deleted"] is True
    error_of(mcp_post(edge, deployment_id, initialize(), {"X-Api-Key": secret}), 401, "UNAUTHORIZED")

    edge.http.put(f"/v1/deployments/{deployment_id}", json={"allowAnonymous": True}, headers=owner.bearer)
    assert connect(edge, deployment, {})["prompts"][0][0] == workflow_id
    edge.http.post(
        f"/v1/deployments/{deployment_id}/adapters",
        json={"adapter": "codex", "enabled": False},
        headers=owner.bearer,
    )
    error_of(mcp_post(edge, deployment_id, initialize("codex-mcp-client")), 403, "FORBIDDEN")
    error_of(mcp_post(edge, deployment_id, initialize(), query="?adapter=codex"), 403, "FORBIDDEN")
    assert mcp_post(edge, deployment_id, initialize("Claude Desktop")).status_code == 200
    edge.http.post(f"/v1/deployments/{deployment_id}/deactivate", headers=owner.bearer)
    error_of(mcp_post(edge, deployment_id, initialize()), 403, "FORBIDDEN")

    usage = edge.http.get(f"/v1/deployments/{deployment_id}/usage", headers=owner.bearer).json()["data"]
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert usage["deploymentId"] == deployment_id and usage["period"] == "month"
    assert usage["connections"] == {"total": 4, "limit": 500, "remaining": 496}
    assert usage["byAdapter"] == {"claude": 3, "cursor": 1, "codex": 0}
    assert len(usage["byDay"]) == 30 and usage["byDay"][-1] == {"date": today, "count": 4}
    day = edge.http.get(f"/v1/deployments/{deployment_id}/usage?period=day", headers=owner.bearer).json()[
        "data"
    ]
    assert day["byDay"] == [{"date": today, "count": 4}]
    error_of(
        edge.http.get(f"/v1/deployments/{deployment_id}/usage?period=year", headers=owner.bearer),
        400,
        "VALIDATION_ERROR",
    )
    listed = edge.http.get("/v1/deployments", headers=owner.bearer).json()["data"][0]["usage"]
    assert listed["connectionsThisMonth"] == 4 and ISO_Z.match(listed["lastConnectedAt"])


def test_deleting_a_deployment_cuts_its_live_sessions(edge: Edge) -> None:
    owner = edge.user()
    deployment = create_deployment(edge, owner, [create_workflow(edge, owner)["workflowId"]])

    async def live_session_then_delete() -> None:
        url = f"{deployment['mcpEndpoint']}?adapter=claude"
        async with mcp_session(url, owner.bearer) as (session, session_id):
            await session.initialize()
            assert (await session.list_tools()).tools
            sent = session_id()
            assert sent
            response = await asyncio.to_thread(
                edge.http.delete, f"/v1/deployments/{deployment['deploymentId']}", headers=owner.bearer
            )
            assert response.status_code == 200
            after = await asyncio.to_thread(
                mcp_post,
                edge,
                deployment["deploymentId"],
                {"jsonrpc": "2.0", "id": 9, "method": "tools/list"},
                {**owner.bearer, "mcp-session-id": sent, "mcp-protocol-version": "2025-06-18"},
            )
            error_of(after, 404, "NOT_FOUND")
            with pytest.raises(Exception):  # noqa: B017 - the SDK reports the refusal its own way
                await asyncio.wait_for(session.list_tools(), timeout=10)

    asyncio.run(live_session_then_delete())


def test_a_session_belongs_to_its_deployment(edge: Edge) -> None:
    owner = edge.user()
    workflow_id = create_workflow(edge, owner)["workflowId"]
    first = create_deployment(edge, owner, [workflow_id], allowAnonymous=True)
    second = create_deployment(edge, owner, [workflow_id], allowAnonymous=True)
    opened = mcp_post(edge, first["deploymentId"], initialize())
    session = opened.headers["mcp-session-id"]
    moved = mcp_post(
        edge,
        second["deploymentId"],
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"mcp-session-id": session, "mcp-protocol-version": "2025-06-18"},
    )
    error_of(moved, 404, "NOT_FOUND")


def test_plans_cap_deployments_and_monthly_connections(edge: Edge) -> None:
    owner = edge.user()
    workflow_id = create_workflow(edge, owner)["workflowId"]
    deployment = create_deployment(edge, owner, [workflow_id], allowAnonymous=True)
    create_deployment(edge, owner, [workflow_id])
    error = error_of(
        edge.http.post(
            "/v1/deployments", json={"name": "Third", "workflowIds": [workflow_id]}, headers=owner.bearer
        ),
        402,
        "PLAN_LIMIT_EXCEEDED",
    )
    assert error["details"] == {"limit": 2, "plan": "free"}
    with concurrent.futures.ThreadPoolExecutor(8) as sessions:  # a month of sessions, eight at a time
        opened = list(
            sessions.map(lambda _: mcp_post(edge, deployment["deploymentId"], initialize()), range(500))
        )
    assert [r.status_code for r in opened] == [200] * 500
    error = error_of(mcp_post(edge, deployment["deploymentId"], initialize()), 402, "PLAN_LIMIT_EXCEEDED")
    assert error["details"] == {"limit": 500, "plan": "free"}
    usage = edge.http.get(f"/v1/deployments/{deployment['deploymentId']}/usage", headers=owner.bearer).json()[
        "data"
    ]
    assert usage["connections"] == {"total": 500, "limit": 500, "remaining": 0}
    edge_plan(edge, owner, "pro")
    assert mcp_post(edge, deployment["deploymentId"], initialize()).status_code == 200
    create_deployment(edge, owner, [workflow_id])  # pro allows 10


def test_deleting_an_account_takes_its_deployments(edge: Edge) -> None:
    owner = edge.user()
    workflow_id = create_workflow(edge, owner)["workflowId"]
    deployment = create_deployment(edge, owner, [workflow_id], allowAnonymous=True)
    create_deployment(edge, owner, [workflow_id])
    assert edge.http.get("/v1/users/me", headers=owner.bearer).json()["data"]["deploymentCount"] == 2
    stats = edge.http.delete("/v1/users/me", headers=owner.bearer).json()["data"]["stats"]
    assert (stats["deployments"], stats["deploymentPrompts"], stats["deploymentLookups"]) == (2, 2, 2)
    error_of(mcp_post(edge, deployment["deploymentId"], initialize()), 404, "NOT_FOUND")
