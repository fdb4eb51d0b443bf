"""Routes as MCP tools: one per keyed route, named after its RPC, its input schema the route's own rules."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from edge.bindings import load_bindings
from edge.tools import tool_name, tools, visible
from services.common.surfaces import CORE, SUPPORT


@pytest.mark.parametrize("surface", [SUPPORT, CORE], ids=lambda s: s.name)
def test_every_keyed_route_is_one_tool_with_a_self_contained_schema(surface: object) -> None:
    made = tools(surface)  # type: ignore[arg-type]
    keyed = [
        b
        for b in load_bindings()
        if b.access.surface is surface and b.access.credential.key_kind is not None and not b.streaming
    ]
    assert sorted(t.binding.rpc for t in made) == sorted(b.rpc for b in keyed)
    assert len({t.name for t in made}) == len(made)
    for tool in made:
        Draft202012Validator.check_schema(tool.input_schema)
        assert "#/components/" not in json.dumps(tool.input_schema), tool.name
        assert tool.description and tool.title, tool.name


def by_name(surface: object) -> dict[str, object]:
    return {t.name: t for t in tools(surface)}  # type: ignore[arg-type]


def test_the_schema_refuses_what_the_route_refuses() -> None:
    create = by_name(SUPPORT)["create_lead"]
    check = Draft202012Validator(create.input_schema).validate  # type: ignore[attr-defined]
    check({"lead": {"email": "ada@example.com", "name": "Ada"}})
    for bad in (
        {},
        {"lead": {"email": 5}},
        {"lead": {"name": "Ada\u0000"}},
        {"lead": {"unknown": 1}},
        {"lead": {"name": "x"}, "extra": True},
    ):
        with pytest.raises(ValidationError):
            check(bad)
    get = by_name(CORE)["get_instance"]
    assert get.input_schema["required"] == ["instance_id"]  # type: ignore[attr-defined]
    listing = by_name(SUPPORT)["list_tickets"]
    assert "limit" in listing.input_schema["properties"] and "required" not in listing.input_schema  # type: ignore[attr-defined]


def test_annotations_follow_the_http_method() -> None:
    support = by_name(SUPPORT)
    assert support["get_lead"].annotations == {  # type: ignore[attr-defined]
        "readOnlyHint": True,
        "destructiveHint": False,
        "idempotentHint": True,
    }
    assert support["create_lead"].annotations["destructiveHint"] is False  # type: ignore[attr-defined]
    assert support["delete_lead"].annotations["destructiveHint"] is True  # type: ignore[attr-defined]
    assert support["update_lead"].writes and not support["list_leads"].writes  # type: ignore[attr-defined]


def test_a_key_sees_only_the_tools_its_scopes_open() -> None:
    every = tools(SUPPORT)
    readable = {t.name for t in visible(every, ["crm:read"])}
    assert "get_lead" in readable and "create_lead" not in readable and "get_ticket" not in readable
    everything = [
        "crm:*",
        "tickets:*",
        "conversations:*",
        "keys:*",
        "webhooks:*",
        "events:read",
        "mcp-log:read",
    ]
    assert {t.name for t in visible(every, everything)} == {t.name for t in every}
    assert visible(every, []) == []


def test_names_are_the_rpcs_in_snake_case() -> None:
    assert tool_name("hydra.crm.v1.LeadService.ListLeads") == "list_leads"
    assert tool_name("hydra.gatekeeper.v1.ApiKeyContextService.GetApiKeyContext") == "get_api_key_context"
