"""Every answer names its request (x-request-id), and every error body names it too, whoever refused."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import Edge, Key, core_key, named_request

LEADS = "/api/v1/leads"


def request_id(response) -> uuid.UUID:
    """The response's x-request-id: one the edge made (a UUID)."""
    return uuid.UUID(response.headers["x-request-id"])


def test_every_answer_names_its_request_and_no_two_share_a_name(edge: Edge, key: Key) -> None:
    created = edge.http.post(LEADS, json={"name": "Named"}, headers=key.bearer)
    assert created.status_code == 201
    lead = created.json()["lead"]
    answers = [
        created,
        edge.http.get(f"{LEADS}/{lead['id']}", headers=key.bearer),
        edge.http.get(LEADS, headers=key.bearer),
        edge.http.delete(f"{LEADS}/{lead['id']}", headers=key.bearer),
        edge.http.get("/openapi.json"),
        edge.http.get("/healthz"),
    ]
    assert [a.status_code for a in answers] == [201, 200, 200, 204, 200, 200]
    names = {request_id(a) for a in answers}
    assert len(names) == len(answers)


def test_a_client_cannot_choose_the_name_of_its_request(edge: Edge, key: Key) -> None:
    chosen = str(uuid.uuid4())
    for sent in (chosen, 'x"}, "code": "injected'):
        answer = edge.http.get(f"{LEADS}/{uuid.uuid4()}", headers={**key.bearer, "x-request-id": sent})
        assert answer.status_code == 404
        assert answer.headers["x-request-id"] != sent
        request_id(answer)
        assert named_request(answer)["code"] == "not_found"


# Who refuses, and how: method, path, request options (headers default to the key's), status.
SUPPORT_REFUSALS = {
    "the service: not found": ("GET", f"{LEADS}/{uuid.UUID(int=1)}", {}, 404),
    "the service: invalid": ("POST", LEADS, {"json": {"email": "not an email"}}, 400),
    "the gatekeeper: wrong key": ("GET", LEADS, {"headers": {"Authorization": "Bearer hmcp_wrong"}}, 401),
    "the gatekeeper: no key": ("GET", LEADS, {"headers": {}}, 401),
    "the edge: no route": ("GET", "/api/v1/nothing-here", {}, 404),
    "the edge: method": ("PUT", LEADS, {}, 405),
    "the edge: not JSON": ("POST", LEADS, {"content": b"{not json", "json_type": True}, 400),
    "the edge: too large": ("POST", LEADS, {"content": b"x" * 2_000_000, "json_type": True}, 413),
}


@pytest.mark.parametrize("refusal", SUPPORT_REFUSALS)
def test_a_support_error_names_its_request_whoever_refused(edge: Edge, key: Key, refusal: str) -> None:
    method, path, options, status = SUPPORT_REFUSALS[refusal]
    options = dict(options)  # shared by both backends' runs
    headers = options.pop("headers", key.bearer)
    if options.pop("json_type", False):
        headers = {**headers, "content-type": "application/json"}
    answer = edge.http.request(method, path, headers=headers, **options)
    assert answer.status_code == status, answer.text
    assert set(named_request(answer)) >= {"error", "code"}


@pytest.mark.parametrize(
    ("method", "path", "with_key", "status"),
    [
        ("GET", f"/v1/instances/{uuid.UUID(int=1)}", True, 404),  # the service
        ("GET", "/v1/instances/not-a-uuid", True, 422),  # the service's path check
        ("GET", "/v1/instances", False, 401),  # the gatekeeper
        ("GET", "/v1/nothing-here", True, 404),  # the edge
    ],
)
def test_a_core_error_names_its_request(
    edge: Edge, method: str, path: str, with_key: bool, status: int
) -> None:
    headers = core_key(edge).api_key if with_key else {}
    answer = edge.http.request(method, path, headers=headers)
    assert answer.status_code == status, answer.text
    assert list(named_request(answer)) == ["detail"]


def test_the_documented_error_bodies_name_the_request(edge: Edge) -> None:
    schemas = edge.http.get("/openapi.json").json()["components"]["schemas"]
    for name in ("SupportError", "HTTPError", "HTTPValidationError", "MarketplaceError"):
        assert "request_id" in schemas[name]["properties"], name
