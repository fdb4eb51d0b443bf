"""The API reference served at the edge (OpenAPI JSON, Swagger UI, ReDoc), and 405 for unbound methods."""

from __future__ import annotations

import uuid

import yaml
from openapi_spec_validator import validate

from edge.bindings import load_bindings
from tests.e2e.conftest import Edge, core_key
from tests.e2e.test_core_routes import assert_detail
from tests.e2e.test_leads import assert_error


def test_openapi_document_is_valid_and_covers_every_route(edge: Edge) -> None:
    response = edge.http.get("/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    spec = response.json()
    validate(spec)
    assert spec["openapi"].startswith("3.1")
    for binding in load_bindings():
        operation = spec["paths"][binding.template][binding.method.lower()]
        assert operation["operationId"] == binding.rpc.rsplit(".", 1)[1]
        assert operation.get("x-required-scope", "") == binding.access.scope
    create = spec["paths"]["/v1/instances/{instance_id}/channels"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChannelCreate"
    }
    channel_create = spec["components"]["schemas"]["ChannelCreate"]
    assert channel_create["required"] == ["channel_type", "external_identifier", "provider"]
    assert channel_create["properties"]["provider"]["maxLength"] == 50
    assert "webhook_secret" not in spec["components"]["schemas"]["Channel"]["properties"]
    assert "422" in create["responses"] and "400" in spec["paths"]["/api/v1/leads"]["post"]["responses"]


def test_the_same_document_is_served_as_yaml(edge: Edge) -> None:
    served = edge.http.get("/openapi.yaml")
    assert served.status_code == 200 and served.headers["content-type"] == "application/yaml"
    assert yaml.safe_load(served.text) == edge.http.get("/openapi.json").json()


def test_swagger_ui_and_redoc_render_the_live_document(edge: Edge) -> None:
    for page in ("/docs", "/redoc"):
        response = edge.http.get(page)
        assert response.status_code == 200, page
        assert response.headers["content-type"].startswith("text/html")
        assert "/openapi.json" in response.text


def test_an_unbound_method_on_a_bound_path_is_405_with_allow(edge: Edge) -> None:
    key = core_key(edge)
    path = f"/v1/instances/{uuid.uuid4()}"
    response = edge.http.put(path, json={}, headers=key.api_key)
    assert assert_detail(response, 405) == "Method Not Allowed"
    assert response.headers["allow"] == "DELETE, GET, PATCH"
    support = edge.http.put("/api/v1/leads", json={}, headers=edge.key().bearer)
    assert_error(support, 405, "method_not_allowed")
    assert support.headers["allow"] == "GET, POST"
