"""Every /api/v1 route, taken from the protos: scope enforcement and tenant isolation, table-driven."""

from __future__ import annotations

import uuid

import pytest
from hydra.options.v1 import options_pb2

from edge.bindings import Binding, load_bindings
from tests.e2e.conftest import Edge, create_resource
from tests.e2e.test_leads import assert_error

SUPPORT_ROUTES = [b for b in load_bindings() if b.access.auth == options_pb2.AUTH_MODE_SUPPORT_KEY]
ALL_SCOPES = sorted({b.access.scope for b in SUPPORT_ROUTES})
ROUTE_IDS = [f"{b.method} {b.template}" for b in SUPPORT_ROUTES]
# Bodies valid for their route, so a request gets past validation to the tenant check.
VALID_BODIES = {"POST /api/v1/conversations/{id}/messages": {"content": "Hello"}}


@pytest.mark.parametrize("binding", SUPPORT_ROUTES, ids=ROUTE_IDS)
def test_every_route_needs_exactly_its_scope(edge: Edge, binding: Binding) -> None:
    others = [s for s in ALL_SCOPES if s != binding.access.scope]
    key = edge.key(scopes=others)
    path = binding.template.replace("{id}", str(uuid.uuid4()))
    body = assert_error(
        edge.http.request(binding.method, path, json={}, headers=key.bearer), 403, "forbidden_scope"
    )
    assert body["error"].startswith(f"Missing required scope(s): {binding.access.scope}.")


@pytest.mark.parametrize(
    "binding",
    [b for b in SUPPORT_ROUTES if "{id}" in b.template],
    ids=[i for i, b in zip(ROUTE_IDS, SUPPORT_ROUTES, strict=True) if "{id}" in b.template],
)
def test_every_route_hides_other_tenants_rows(edge: Edge, binding: Binding) -> None:
    collection = binding.template.split("/{id}")[0]
    theirs = create_resource(edge, edge.key(scopes=ALL_SCOPES), collection)
    mine = edge.key(scopes=ALL_SCOPES)
    path = binding.template.replace("{id}", theirs["id"])
    body = VALID_BODIES.get(f"{binding.method} {binding.template}", {})
    assert_error(edge.http.request(binding.method, path, json=body, headers=mine.bearer), 404, "not_found")
    listed = edge.http.get(collection, headers=mine.bearer).json()
    (rows,) = [value for value in listed.values() if isinstance(value, list)]
    assert theirs["id"] not in {row["id"] for row in rows}
