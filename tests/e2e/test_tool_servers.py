"""The Support and HydraCore APIs as MCP servers, driven by the MCP SDK's own client through the edge:
the tools a key's scopes open, calls answered as their routes, another tenant's rows not found."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from typing import Any

import pytest
from mcp.shared.exceptions import McpError

from tests.e2e.conftest import (
    Edge,
    Key,
    core_key,
    create_channel,
    create_instance,
    create_resource,
    named_request,
)
from tests.e2e.test_deployments import mcp_session
from tests.e2e.test_side_effects import SCOPES as SIDE_EFFECT_SCOPES
from tests.e2e.test_side_effects import contact_with_email
from tests.support.database import stack_rows
from tests.support.polling import wait_until


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    """A route's error body as a tool hands it over, checked to name its request, without the name."""
    uuid.UUID(body["request_id"])
    return {name: value for name, value in body.items() if name != "request_id"}


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
    malformed, stranger = asyncio.run(
        _use(
            f"{edge.stack.edge_url}/v1/mcp",
            core_key(edge).api_key,
            [
                ("get_instance", {"instance_id": "not-a-uuid"}),
                ("get_instance", {"instance_id": instance["id"]}),
            ],
        )
    )["answers"]
    assert malformed[0] and json.loads(malformed[2])["detail"][0]["loc"] == ["path", "instance_id"]
    assert stranger[0] and without_request_id(json.loads(stranger[2])) == {"detail": "Instance not found"}
    refused = edge.http.post(
        "/v1/mcp", json={}, headers={**edge.key().bearer, "accept": "application/json, text/event-stream"}
    )
    assert refused.status_code == 401
    assert named_request(refused) == {"detail": "Invalid API key: this API takes hc_live_ keys."}


async def _write_flow(
    url: str, headers: dict[str, str], lead_id: str, other_headers: dict[str, str]
) -> dict[str, Any]:
    """Previews, confirms and replays writes; returns what each step answered."""
    out: dict[str, Any] = {}
    async with mcp_session(url, headers) as (session, _):
        await session.initialize()
        out["tools"] = [t.name for t in (await session.list_tools()).tools]
        preview = await session.call_tool(
            "update_lead", {"id": lead_id, "lead": {"name": "Ada L.", "phone": None}}
        )
        out["preview"] = preview.structuredContent
        token = preview.structuredContent["confirmation_token"]  # type: ignore[index]
        out["confirmed"] = (await session.call_tool("confirm", {"token": token})).structuredContent
        replay = await session.call_tool("confirm", {"token": token})
        out["replay"] = (replay.isError, replay.content[0].text)  # type: ignore[union-attr]
        stale = await session.call_tool("update_lead", {"id": lead_id, "lead": {"name": "Someone"}})
        out["stale_token"] = stale.structuredContent["confirmation_token"]  # type: ignore[index]
        created = await session.call_tool("create_lead", {"lead": {"name": "Grace"}})
        out["create_preview"] = created.structuredContent
        out["create_token"] = created.structuredContent["confirmation_token"]  # type: ignore[index]
    async with mcp_session(url, other_headers) as (session, _):
        await session.initialize()
        stolen = await session.call_tool("confirm", {"token": out["create_token"]})
        out["stolen"] = (stolen.isError, stolen.content[0].text)  # type: ignore[union-attr]
    return out


async def _confirm(url: str, headers: dict[str, str], token: str) -> tuple[bool, str]:
    """What confirming `token` in a new session answered: whether an error, and its text."""
    async with mcp_session(url, headers) as (session, _):
        await session.initialize()
        result = await session.call_tool("confirm", {"token": token})
        return result.isError, result.content[0].text  # type: ignore[union-attr]


def test_writes_are_previewed_then_confirmed_once(edge: Edge) -> None:
    writer = edge.key(scopes=("crm:read", "crm:write"))
    other = edge.key(writer.tenant, scopes=("crm:read", "crm:write"))
    lead = edge.http.post(
        "/api/v1/leads", json={"name": "Ada", "phone": "+1 555"}, headers=writer.bearer
    ).json()["lead"]
    url = f"{edge.stack.edge_url}/api/mcp/v1"
    seen = asyncio.run(_write_flow(url, writer.bearer, lead["id"], other.bearer))
    assert "confirm" in seen["tools"]
    assert seen["preview"]["preview"]["changes"] == {
        "name": {"from": "Ada", "to": "Ada L."},
        "phone": {"from": "+1 555", "to": None},
    }
    assert seen["confirmed"]["lead"]["name"] == "Ada L." and seen["confirmed"]["lead"]["phone"] is None
    assert seen["replay"][0] and "already used" in seen["replay"][1]
    assert seen["create_preview"]["preview"]["creates"] == {"name": "Grace"}
    assert seen["stolen"][0] and "Unknown confirmation token" in seen["stolen"][1]
    # Previewing changed nothing; the row then changed under the stale preview, so it is refused.
    assert edge.http.get("/api/v1/leads?limit=10", headers=writer.bearer).json()["count"] == 1
    edge.http.patch(f"/api/v1/leads/{lead['id']}", json={"company": "Acme"}, headers=writer.bearer)
    is_error, text = asyncio.run(_confirm(url, writer.bearer, seen["stale_token"]))
    assert is_error and "changed since the preview" in text
    # Minutes pass: the create's token (another key's, refused above) expires unused.
    stack_rows(
        edge.env,
        "gatekeeper",
        "UPDATE tool_confirmations SET expires_at = :past WHERE token_hash = :digest",
        past="2020-01-01 00:00:00.000000",
        digest=hashlib.sha256(seen["create_token"].encode()).hexdigest(),
    )
    is_error, text = asyncio.run(_confirm(url, writer.bearer, seen["create_token"]))
    assert is_error and "expired" in text
    assert (
        edge.http.get(f"/api/v1/leads/{lead['id']}", headers=writer.bearer).json()["lead"]["name"] == "Ada L."
    )


def test_the_call_log_holds_each_call_and_nothing_of_its_content(edge: Edge) -> None:
    key = edge.key(scopes=("crm:read", "crm:write", "mcp-log:read"))
    lead = edge.http.post("/api/v1/leads", json={"name": "Secret Name"}, headers=key.bearer).json()["lead"]
    url = f"{edge.stack.edge_url}/api/mcp/v1"
    asyncio.run(
        _use(
            url,
            key.bearer,
            [
                ("get_lead", {"id": lead["id"]}),
                ("get_lead", {"id": "00000000-0000-4000-8000-000000000000"}),
                ("delete_lead", {"id": lead["id"]}),
                ("confirm", {"token": "hconf_forged"}),
                ("evil\x1b[31m" + "x" * 500, {}),
            ],
        )
    )
    page = edge.http.get("/api/v1/mcp/calls?limit=3", headers=key.bearer)
    assert page.status_code == 200, page.text
    body = page.json()
    assert body["count"] == 3 and body["next_cursor"]
    assert (body["calls"][0]["tool"], body["calls"][0]["status"]) == ("(unknown)", "error")
    calls = (
        body["calls"]
        + edge.http.get(f"/api/v1/mcp/calls?cursor={body['next_cursor']}", headers=key.bearer).json()["calls"]
    )
    assert [(c["tool"], c["scope"], c["status"]) for c in calls] == [
        ("(unknown)", "", "error"),
        ("confirm", "", "refused"),
        ("delete_lead", "crm:write", "ok"),
        ("get_lead", "crm:read", "error"),
        ("get_lead", "crm:read", "ok"),
    ]
    assert all(set(c) == {"id", "key_id", "tool", "scope", "latency_ms", "status", "at"} for c in calls)
    assert all(c["key_id"] == key.id and c["latency_ms"] >= 0 for c in calls)
    assert "Secret" not in page.text and lead["id"] not in page.text
    assert (
        edge.http.get(
            "/api/v1/mcp/calls", headers=edge.key(key.tenant, scopes=("crm:read",)).bearer
        ).status_code
        == 403
    )
    other_tenant = edge.key(scopes=("mcp-log:read",))
    assert edge.http.get("/api/v1/mcp/calls", headers=other_tenant.bearer).json() == {"calls": [], "count": 0}


async def _refusals(url: str, key: Key) -> dict[str, Any]:
    """A key's window spent over MCP, then an unknown key: what each refusal looked like."""
    out: dict[str, Any] = {}
    async with mcp_session(url, key.bearer) as (session, _):
        await session.initialize()
        await session.list_tools()
        await session.call_tool("list_leads", {"limit": 1})
        with pytest.raises(McpError) as limited:
            await session.call_tool("list_leads", {"limit": 1})
        out["limited"] = limited.value.error
    async with mcp_session(url, {"authorization": "Bearer hmcp_unknown"}) as (session, _):
        with pytest.raises(McpError) as unknown:
            await session.initialize()
        out["unknown"] = unknown.value.error
    return out


def test_limits_and_bad_keys_are_mcp_errors_with_the_retry_time(edge: Edge) -> None:
    key = edge.key(scopes=("crm:read",), rate_limit=3)
    seen = asyncio.run(_refusals(f"{edge.stack.edge_url}/api/mcp/v1", key))
    limited = seen["limited"]
    assert limited.code == -32029 and "Rate limit exceeded" in limited.message
    assert limited.data["status"] == 429 and limited.data["error"]["code"] == "rate_limited"
    assert 0 < limited.data["retry_after_seconds"] <= 60
    # The window is the key's: HTTP requests find it spent too.
    assert edge.http.get("/api/v1/leads", headers=key.bearer).status_code == 429
    unknown = seen["unknown"]
    assert unknown.code == -32001 and unknown.data["status"] == 401
    assert without_request_id(unknown.data["error"]) == {
        "error": "Invalid or revoked API key.",
        "code": "unauthorized",
    }
    # A notification carries no work in a stateless server: 202, whoever sends it; anything else that is
    # not an MCP request is refused over HTTP.
    mcp = {"accept": "application/json, text/event-stream", "authorization": "Bearer hmcp_unknown"}
    url = f"{edge.stack.edge_url}/api/mcp/v1"
    note = edge.http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=mcp)
    assert note.status_code == 202 and note.content == b""
    assert edge.http.post(url, content=b"[1, 2]", headers=mcp).status_code == 401
    assert edge.http.get(url, headers=mcp).status_code == 401


async def _previews(url: str, headers: dict[str, str], calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    async with mcp_session(url, headers) as (session, _):
        await session.initialize()
        return [(await session.call_tool(name, arguments)).structuredContent for name, arguments in calls]


def test_a_delete_preview_names_what_it_touches_and_what_blocks_it(edge: Edge) -> None:
    key = edge.key(scopes=("crm:read", "crm:write", "conversations:read"))
    account = create_resource(edge, key, "/api/v1/accounts")
    contacts = [
        edge.http.post(
            "/api/v1/contacts",
            json={"email": f"c{n}-{uuid.uuid4().hex[:6]}@example.com", "account_id": account["id"]},
            headers=key.bearer,
        ).json()["contact"]
        for n in range(2)
    ]
    account_preview, contact_preview = asyncio.run(
        _previews(
            f"{edge.stack.edge_url}/api/mcp/v1",
            key.bearer,
            [("delete_account", {"id": account["id"]}), ("delete_contact", {"id": contacts[0]["id"]})],
        )
    )
    assert "confirmation_token" not in account_preview and "refused" in account_preview["blocked"]
    preview = account_preview["preview"]
    assert preview["blocked_by"] == {"contacts": 2} and preview["deletes"]["account"]["id"] == account["id"]
    assert sorted(preview["dependents"]["contacts"]["ids"]) == sorted(c["id"] for c in contacts)
    assert contact_preview["confirmation_token"].startswith("hconf_")
    assert contact_preview["preview"]["dependents"] == {
        "conversations": {"effect": "detached", "count": 0, "more": False, "ids": []},
        "tickets": {"effect": "detached", "unknown": "this key lacks tickets:read to list them"},
    }


async def _confirmed(url: str, headers: dict[str, str], name: str, arguments: dict[str, Any]) -> Any:
    async with mcp_session(url, headers) as (session, _):
        await session.initialize()
        preview = await session.call_tool(name, arguments)
        token = preview.structuredContent["confirmation_token"]  # type: ignore[index]
        return (await session.call_tool("confirm", {"token": token})).structuredContent


def test_a_confirmed_write_leaves_the_routes_audit_row_and_side_effects(edge: Edge) -> None:
    key = edge.key(scopes=SIDE_EFFECT_SCOPES)
    contact = contact_with_email(edge, key)
    url = f"{edge.stack.edge_url}/api/mcp/v1"
    ticket = asyncio.run(
        _confirmed(
            url, key.bearer, "create_ticket", {"ticket": {"title": "Via MCP", "customer_id": contact["id"]}}
        )
    )["ticket"]
    (mail,) = wait_until(lambda: edge.mail_to(contact["email"]), what="the confirmation email")
    assert mail["Subject"] == "We received your request: Via MCP" and ticket["id"] in mail.get_payload()
    lead = edge.http.post("/api/v1/leads", json={"name": "Ada"}, headers=key.bearer).json()["lead"]
    asyncio.run(_confirmed(url, key.bearer, "update_lead", {"id": lead["id"], "lead": {"name": "Ada L."}}))
    audit = stack_rows(
        edge.env,
        "crm",
        "SELECT resource_id, action FROM audit_log WHERE key_id = :key ORDER BY at",
        key=key.id,
    )
    lead_rows = [
        action for resource_id, action in audit if uuid.UUID(str(resource_id)) == uuid.UUID(lead["id"])
    ]
    assert lead_rows == ["create", "update"]
    assert len(edge.mail_to(contact["email"])) == 1


def test_hydracore_deletes_are_previewed_with_what_goes_with_them(edge: Edge) -> None:
    key = core_key(edge)
    instance = create_instance(edge, key, name="Doomed")
    channel = create_channel(edge, key, instance["id"])
    url = f"{edge.stack.edge_url}/v1/mcp"

    async def flow() -> tuple[Any, Any]:
        async with mcp_session(url, key.api_key) as (session, _):
            await session.initialize()
            preview = (
                await session.call_tool("delete_instance", {"instance_id": instance["id"]})
            ).structuredContent
            token = preview["confirmation_token"]  # type: ignore[index]
            return preview, (await session.call_tool("confirm", {"token": token})).structuredContent

    preview, confirmed = asyncio.run(flow())
    assert preview["preview"]["deletes"]["id"] == instance["id"]
    assert preview["preview"]["dependents"]["channels"] == {
        "effect": "deleted",
        "count": 1,
        "more": False,
        "ids": [channel["id"]],
    }
    assert confirmed == {}
    gone = edge.http.get(f"/v1/instances/{instance['id']}", headers=key.api_key)
    assert gone.status_code == 404 and "detail" in gone.json()
