"""The Support and HydraCore APIs as MCP servers, driven by the MCP SDK's own client through the edge:
the tools a key's scopes open, calls answered as their routes, another tenant's rows not found."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.e2e.conftest import Edge, core_key, create_instance
from tests.e2e.test_deployments import mcp_session


async def _use(url: str, headers: dict[str, str], calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    async with mcp_session(url, headers) as (session, _):
        await session.initialize()
        listed = [t.name for t in (await session.list_tools()).tools]
        answers = []
        for name, arguments in calls:
            result = await session.call_tool(name, arguments)
            answers.append(
                (result.isError, result.structuredContent, result.content[0].text if result.content else "")
            )  # type: ignore[union-attr]
        return {"tools": listed, "answers": answers}


def test_support_tools_are_the_keys_routes(edge: Edge) -> None:
    reader = edge.key(scopes=("crm:read",))
    writer = edge.key(reader.tenant, scopes=("crm:read", "crm:write", "tickets:read"))
    lead = edge.http.post("/api/v1/leads", json={"name": "Ada"}, headers=writer.bearer).json()["lead"]
    stranger = edge.key()
    url = f"{edge.stack.edge_url}/api/mcp/v1"
    seen = asyncio.run(
        _use(url, reader.bearer, [("get_lead", {"id": lead["id"]}), ("list_leads", {"limit": 5})])
    )
    assert (
        "get_lead" in seen["tools"]
        and "create_lead" not in seen["tools"]
        and "get_ticket" not in seen["tools"]
    )
    (got, listed) = seen["answers"]
    assert got[0] is False and got[1]["lead"] == lead
    assert listed[1]["count"] == 1
    other = asyncio.run(_use(url, stranger.bearer, [("get_lead", {"id": lead["id"]})]))
    is_error, _, text = other["answers"][0]
    assert is_error and json.loads(text)["code"] == "not_found"
    refused = edge.http.post(
        url, json={}, headers={"authorization": "Bearer hmcp_nope", "accept": "application/json"}
    )
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"
    assert "x-ratelimit-limit" in refused.headers


def test_hydracore_tools_answer_for_hc_live_keys(edge: Edge) -> None:
    key = core_key(edge)
    instance = create_instance(edge, key, name="Bot")
    seen = asyncio.run(
        _use(
            f"{edge.stack.edge_url}/v1/mcp", key.api_key, [("get_instance", {"instance_id": instance["id"]})]
        )
    )
    assert {"list_instances", "get_instance", "delete_instance"} <= set(seen["tools"])
    assert seen["answers"][0][1] == instance
    refused = edge.http.post(
        "/v1/mcp", json={}, headers={**edge.key().bearer, "accept": "application/json, text/event-stream"}
    )
    assert refused.status_code == 401
    assert refused.json() == {"detail": "Invalid API key: this API takes hc_live_ keys."}
