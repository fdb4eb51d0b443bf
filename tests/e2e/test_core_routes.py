"""Every HydraCore /v1 route, taken from the protos: auth, scopes, tenant isolation and 422 path ids."""

from __future__ import annotations

import re
import uuid

import pytest
from hydra.options.v1 import options_pb2

from edge.bindings import Binding, load_bindings
from tests.e2e.conftest import (
    CORE_SCOPES,
    NOWHERE,
    Edge,
    core_key,
    create_channel,
    create_instance,
    create_site,
    named_request,
)

CORE_ROUTES = [b for b in load_bindings() if b.access.auth == options_pb2.AUTH_MODE_CORE_KEY]
ROUTE_IDS = [f"{b.method} {b.template}" for b in CORE_ROUTES]
PATH_PARAM = re.compile(r"\{(\w+)\}")


def assert_detail(response, status: int) -> object:
    """A FastAPI-style error: the status, JSON, and a "detail" (returned)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = named_request(response)
    assert list(body) == ["detail"], body
    return body["detail"]


# Bodies valid for their route, so a request gets past validation to the tenant check.
VALID_BODIES = {
    "POST /v1/instances": {"name": "Bot"},
    "POST /v1/instances/{instance_id}/channels": {
        "channel_type": "sms",
        "provider": "twilio",
        "external_identifier": "+15550100",
    },
    "POST /v1/sites": {"name": "Site"},
}


def fill(template: str, **values: str) -> str:
    """The template with each {param} replaced by the given value, or a fresh UUID."""
    return PATH_PARAM.sub(lambda m: values.get(m.group(1), str(uuid.uuid4())), template)


def test_the_seed_routes_are_all_bound() -> None:
    assert set(ROUTE_IDS) >= {
        "GET /v1/instances",
        "POST /v1/instances",
        "GET /v1/instances/{instance_id}",
        "PATCH /v1/instances/{instance_id}",
        "DELETE /v1/instances/{instance_id}",
        "GET /v1/instances/{instance_id}/channels",
        "POST /v1/instances/{instance_id}/channels",
        "PATCH /v1/instances/{instance_id}/channels/{endpoint_id}",
        "DELETE /v1/instances/{instance_id}/channels/{endpoint_id}",
        "GET /v1/mcp/api-key-context",
        "GET /v1/sites",
        "POST /v1/sites",
        "GET /v1/sites/{site_id}",
        "PATCH /v1/sites/{site_id}",
        "DELETE /v1/sites/{site_id}",
        "GET /v1/sites/{site_id}/analytics",
        "GET /v1/sites/{site_id}/submissions",
    }


@pytest.mark.parametrize("binding", CORE_ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("auth", ["none", "support_key", "unknown_key"])
def test_every_route_needs_a_hydracore_key(edge: Edge, binding: Binding, auth: str) -> None:
    headers = {
        "none": {},
        "support_key": edge.key(scopes=["crm:read"]).bearer,
        "unknown_key": {"X-Api-Key": "hc_live_" + "x" * 40},
    }[auth]
    response = edge.http.request(binding.method, fill(binding.template), json={}, headers=headers)
    assert isinstance(assert_detail(response, 401), str)


@pytest.mark.parametrize(
    "binding",
    [b for b in CORE_ROUTES if b.access.scope],
    ids=[i for i, b in zip(ROUTE_IDS, CORE_ROUTES, strict=True) if b.access.scope],
)
def test_every_route_needs_exactly_its_scope(edge: Edge, binding: Binding) -> None:
    key = core_key(edge, scopes=[s for s in CORE_SCOPES if s != binding.access.scope])
    response = edge.http.request(binding.method, fill(binding.template), json={}, headers=key.api_key)
    assert assert_detail(response, 403) == f"Missing required scope: {binding.access.scope}"


@pytest.mark.parametrize(
    "binding", [b for b in CORE_ROUTES if "{" in b.template], ids=[i for i in ROUTE_IDS if "{" in i]
)
def test_every_route_hides_other_tenants_rows(edge: Edge, binding: Binding) -> None:
    theirs = core_key(edge)
    instance = create_instance(edge, theirs)
    channel = create_channel(edge, theirs, instance["id"])
    site = create_site(edge, theirs)
    webhook = edge.http.post(
        "/v1/webhooks", json={"url": NOWHERE, "event_types": ["*"]}, headers=theirs.api_key
    ).json()
    mine = core_key(edge)
    path = fill(
        binding.template,
        instance_id=instance["id"],
        endpoint_id=channel["id"],
        site_id=site["id"],
        id=webhook["id"] if binding.template.startswith("/v1/webhooks") else theirs.id,
    )
    body = VALID_BODIES.get(f"{binding.method} {binding.template}", {})
    detail = assert_detail(edge.http.request(binding.method, path, json=body, headers=mine.api_key), 404)
    assert detail in (
        "Instance not found",
        "Channel not found",
        "Site not found",
        "Key not found.",
        "Webhook not found",
    )
    # ...and the rows are untouched for their owner.
    listed = edge.http.get(f"/v1/instances/{instance['id']}/channels", headers=theirs.api_key).json()
    assert [c["id"] for c in listed["channels"]] == [channel["id"]]
    assert edge.http.get(f"/v1/sites/{site['id']}", headers=theirs.api_key).json() == site


@pytest.mark.parametrize(
    "binding", [b for b in CORE_ROUTES if "{" in b.template], ids=[i for i in ROUTE_IDS if "{" in i]
)
def test_malformed_path_ids_are_422_naming_the_parameter(edge: Edge, binding: Binding) -> None:
    key = core_key(edge)
    instance = create_instance(edge, key)
    for param in PATH_PARAM.findall(binding.template):
        values = {"instance_id": instance["id"], param: "not-a-uuid"}
        path = fill(binding.template, **values)
        detail = assert_detail(edge.http.request(binding.method, path, json={}, headers=key.api_key), 422)
        assert {
            "loc": ["path", param],
            "msg": "Input should be a valid UUID",
            "type": "uuid_parsing",
        } in detail
