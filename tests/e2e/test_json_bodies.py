"""A body that is not JSON: on HydraCore, FastAPI's 422 json_invalid at the offset where Python's JSON
parser stopped (the edge's check parses it as FastAPI does); elsewhere each surface's own refusal."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import Edge, core_key, create_instance
from tests.e2e.test_core_routes import assert_detail
from tests.e2e.test_leads import assert_error

MALFORMED = [b'{"name": "Bot",}', b'{"name" "Bot"}', b"{", b"nope", b'{"name": "Bot"} trailing', b'["a", ]']


def parser_says(body: bytes) -> json.JSONDecodeError:
    with pytest.raises(json.JSONDecodeError) as error:
        json.loads(body)
    return error.value


@pytest.mark.parametrize("body", MALFORMED)
def test_a_malformed_body_on_hydracore_is_fastapis_json_invalid(edge: Edge, body: bytes) -> None:
    key = core_key(edge)
    headers = {**key.api_key, "content-type": "application/json"}
    expected = parser_says(body)
    for method, path in (
        ("POST", "/v1/instances"),
        ("PATCH", f"/v1/instances/{create_instance(edge, key)['id']}"),
    ):
        response = edge.http.request(method, path, content=body, headers=headers)
        assert assert_detail(response, 422) == [
            {
                "type": "json_invalid",
                "loc": ["body", expected.pos],
                "msg": "JSON decode error",
                "input": {},
                "ctx": {"error": expected.msg},
            }
        ]
    assert len(edge.http.get("/v1/instances", headers=key.api_key).json()["instances"]) == 1


def test_what_is_not_text_is_400_and_the_key_is_checked_first(edge: Edge) -> None:
    key = core_key(edge)
    headers = {**key.api_key, "content-type": "application/json"}
    unreadable = edge.http.post("/v1/instances", content=b'{"name": "\xff\xfe"}', headers=headers)
    assert assert_detail(unreadable, 400) == "There was an error parsing the body"
    anonymous = edge.http.post("/v1/instances", content=b"{", headers={"content-type": "application/json"})
    assert anonymous.status_code == 401
    valid = edge.http.post("/v1/instances", content=b'{"name": "Bot"}', headers=headers)
    assert valid.status_code == 201, valid.text


def test_the_support_surface_keeps_its_envelope(edge: Edge) -> None:
    key = edge.key()
    response = edge.http.post(
        "/api/v1/leads", content=b'{"name" "x"}', headers={**key.bearer, "content-type": "application/json"}
    )
    assert_error(response, 400, "validation_error")


def test_a_body_past_the_checked_size_is_left_to_the_transcoder(edge: Edge) -> None:
    key = core_key(edge)
    big = b'{"name": "Bot", "knowledge": [' + b'{"title": "t", "content": "' + b"x" * (1100 * 1024) + b'"},]}'
    response = edge.http.post(
        "/v1/instances", content=big, headers={**key.api_key, "content-type": "application/json"}, timeout=60
    )
    assert response.status_code in (400, 422), response.text[:300]
    assert "json_invalid" not in response.text  # a cut body is never judged by where it was cut


def test_a_body_nested_past_any_parser_is_refused_and_the_edge_goes_on(edge: Edge) -> None:
    key = core_key(edge)
    headers = {**key.api_key, "content-type": "application/json"}
    deep = b'{"name": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    response = edge.http.post("/v1/instances", content=deep, headers=headers, timeout=30)
    assert response.status_code in (400, 422), response.text[:300]
    for _ in range(4):  # the checks after it, on whatever connection they take, are answered
        assert edge.http.post("/v1/instances", content=b"{", headers=headers).status_code == 422
