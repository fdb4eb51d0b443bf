"""The edge against hostile shapes and sizes: odd headers, huge bodies, slow clients, key floods."""

from __future__ import annotations

from tests.e2e.conftest import Edge, Key, core_key, create_instance
from tests.e2e.test_core_routes import assert_detail
from tests.e2e.test_leads import assert_error


def test_a_422_listing_hundreds_of_errors_arrives_whole_with_a_count_of_the_rest(edge: Edge) -> None:
    key = core_key(edge)
    instance = create_instance(edge, key)
    response = edge.http.patch(
        f"/v1/instances/{instance['id']}", json={"knowledge": [{}] * 499}, headers=key.api_key
    )
    detail = assert_detail(response, 422)
    assert isinstance(detail, list)
    *listed, rest = detail
    assert listed[0] == {"loc": ["body", "knowledge", 0, "title"], "msg": "Field required", "type": "missing"}
    assert rest["type"] == "too_many_errors"
    assert rest["msg"] == f"{2 * 499 - len(listed)} more errors not listed"


def test_a_400_listing_hundreds_of_errors_arrives_whole_on_the_support_api(edge: Edge, key: Key) -> None:
    response = edge.http.post(
        "/api/v1/leads", json={f"unknown_{n}": n for n in range(400)}, headers=key.bearer
    )
    body = assert_error(response, 400, "validation_error")
    assert "Extra inputs are not permitted" in body["error"] and body["error"].endswith("more errors")
