"""Authentication, scopes, rate limits and Envoy's own errors, in the seed's envelopes."""

from __future__ import annotations

import time

import pytest

from hydractl.cli import revoke_key
from tests.e2e.conftest import Edge, Key, named_request
from tests.e2e.test_leads import LEADS, assert_error


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer hmcp_doesnotexist"},
        {"Authorization": "Bearer not_a_key"},
        {"X-Api-Key": "hmcp_doesnotexist"},
    ],
)
def test_missing_malformed_or_unknown_keys_are_unauthorized(edge: Edge, headers: dict[str, str]) -> None:
    assert_error(edge.http.get(LEADS, headers=headers), 401, "unauthorized")


def test_x_api_key_header_works_like_bearer(edge: Edge, key: Key) -> None:
    assert edge.http.get(LEADS, headers={"X-Api-Key": key.secret}).status_code == 200


def test_a_hydracore_key_does_not_open_the_support_api(edge: Edge) -> None:
    core = edge.key(kind="hc_live", scopes=["crm:read"])
    assert_error(edge.http.get(LEADS, headers=core.bearer), 401, "unauthorized")


def test_revoked_key_fails_within_one_second(edge: Edge, key: Key) -> None:
    assert edge.http.get(LEADS, headers=key.bearer).status_code == 200
    revoke_key(edge.env, key.id)
    time.sleep(1.0)
    assert_error(edge.http.get(LEADS, headers=key.bearer), 401, "unauthorized")


@pytest.mark.parametrize(
    ("method", "path", "scopes", "missing"),
    [
        ("POST", LEADS, ["crm:read"], "crm:write"),
        ("PATCH", f"{LEADS}/00000000-0000-4000-8000-000000000000", ["crm:read"], "crm:write"),
        ("DELETE", f"{LEADS}/00000000-0000-4000-8000-000000000000", ["crm:read"], "crm:write"),
        ("GET", LEADS, ["crm:write"], "crm:read"),
        ("GET", f"{LEADS}/00000000-0000-4000-8000-000000000000", ["tickets:read"], "crm:read"),
    ],
)
def test_insufficient_scope_is_forbidden_with_the_seed_message(
    edge: Edge, method: str, path: str, scopes: list[str], missing: str
) -> None:
    key = edge.key(scopes=scopes)
    body = assert_error(
        edge.http.request(method, path, json={"name": "x"}, headers=key.bearer), 403, "forbidden_scope"
    )
    assert (
        body["error"] == f"Missing required scope(s): {missing}. Your key has [{', '.join(sorted(scopes))}]."
    )


def test_sixty_first_request_in_a_minute_is_rate_limited(edge: Edge) -> None:
    key = edge.key(rate_limit=0)  # the v1 default: 60 per minute
    remaining = []
    for _ in range(60):
        response = edge.http.get(LEADS, headers=key.bearer)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit"] == "60"
        remaining.append(int(response.headers["x-ratelimit-remaining"]))
    assert remaining == list(range(59, -1, -1))
    refused = edge.http.get(LEADS, headers=key.bearer)
    assert named_request(refused) == {
        "error": "Rate limit exceeded. Limit 60 requests per minute per API key.",
        "code": "rate_limited",
    }
    assert refused.status_code == 429
    assert refused.headers["x-ratelimit-limit"] == "60" and refused.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    other = edge.key(tenant=key.tenant, rate_limit=0)  # keys limit independently, even in one tenant
    assert edge.http.get(LEADS, headers=other.bearer).status_code == 200


def test_errors_from_envoy_itself_use_each_surfaces_envelope(edge: Edge, key: Key) -> None:
    assert_error(edge.http.get("/api/v1/nothing-here", headers=key.bearer), 404, "not_found")
    assert_error(edge.http.put(LEADS, json={}, headers=key.bearer), 405, "method_not_allowed")
    core = edge.http.get("/v1/nothing-here")
    assert core.status_code == 404 and named_request(core) == {"detail": "Not Found"}


def test_healthz_reflects_upstreams(edge: Edge) -> None:
    assert edge.http.get("/healthz").status_code == 200
