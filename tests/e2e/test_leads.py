"""The /api/v1/leads contract of seed 000, through the real edge."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import Edge, Key, named_request

LEADS = "/api/v1/leads"
SEED_FIELDS = {
    "id",
    "tenant_id",
    "email",
    "name",
    "phone",
    "company",
    "source",
    "source_bot_id",
    "source_conversation_id",
    "created_at",
}


def create(edge: Edge, key: Key, **fields: object) -> dict:
    response = edge.http.post(LEADS, json=fields, headers=key.bearer)
    assert response.status_code == 201, response.text
    return response.json()["lead"]


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = named_request(response)
    assert set(body) >= {"error", "code"} and body["code"] == code, body
    return body


def test_create_returns_201_and_every_seed_field_nulls_included(edge: Edge, key: Key) -> None:
    response = edge.http.post(
        LEADS,
        json={"email": "alice@example.com", "name": "Alice Example", "company": "Example Co"},
        headers=key.bearer,
    )
    assert response.status_code == 201
    assert response.headers["x-ratelimit-limit"] == "100000"
    lead = response.json()["lead"]
    assert set(response.json()) == {"lead"}
    assert set(lead) >= SEED_FIELDS
    assert lead["tenant_id"] == key.tenant
    assert (lead["email"], lead["phone"], lead["source"], lead["source_bot_id"]) == (
        "alice@example.com",
        None,
        "public_api",
        None,
    )
    assert lead["created_at"].endswith("Z")
    uuid.UUID(lead["id"])


def test_list_is_newest_first_with_count_and_limit(edge: Edge, key: Key) -> None:
    ids = [create(edge, key, name=f"lead {i}")["id"] for i in range(4)]
    body = edge.http.get(LEADS, headers=key.bearer).json()
    assert set(body) == {"leads", "count"}
    assert [lead["id"] for lead in body["leads"]] == ids[::-1]
    assert body["count"] == 4
    limited = edge.http.get(LEADS, params={"limit": 2}, headers=key.bearer).json()
    assert [lead["id"] for lead in limited["leads"]] == ids[:1:-1] and limited["count"] == 2


def test_empty_list(edge: Edge, key: Key) -> None:
    assert edge.http.get(LEADS, headers=key.bearer).json() == {"leads": [], "count": 0}


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", "99999999999"])
def test_limit_outside_1_to_100_is_a_validation_error(edge: Edge, key: Key, limit: str) -> None:
    assert_error(edge.http.get(LEADS, params={"limit": limit}, headers=key.bearer), 400, "validation_error")


def test_unknown_query_parameter_is_a_validation_error(edge: Edge, key: Key) -> None:
    assert_error(edge.http.get(LEADS, params={"limt": 5}, headers=key.bearer), 400, "validation_error")


def test_get_patch_delete_round_trip(edge: Edge, key: Key) -> None:
    lead = create(edge, key, email="bob@example.com", name="Bob", phone="+1 555 0100")
    url = f"{LEADS}/{lead['id']}"
    assert edge.http.get(url, headers=key.bearer).json() == {"lead": lead}

    patched = edge.http.patch(url, json={"phone": None, "company": "Bob Inc"}, headers=key.bearer)
    assert patched.status_code == 200
    body = patched.json()["lead"]
    assert (body["phone"], body["company"], body["name"], body["email"]) == (
        None,
        "Bob Inc",
        "Bob",
        "bob@example.com",
    )
    assert body["created_at"] == lead["created_at"] and body["updated_at"] >= lead["updated_at"]

    deleted = edge.http.delete(url, headers=key.bearer)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_error(edge.http.get(url, headers=key.bearer), 404, "not_found")
    assert_error(edge.http.delete(url, headers=key.bearer), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "At least one"),
        ({"email": None, "name": None}, "At least one"),
        ({"email": "not-an-email"}, "email"),
        ({"nmae": "typo"}, "nmae"),
        ({"name": 42}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "ok", "tenant_id": str(uuid.uuid4())}, "tenant_id"),
    ],
)
def test_invalid_create_bodies_are_rejected_and_write_nothing(
    edge: Edge, key: Key, body: dict, needle: str
) -> None:
    error = assert_error(edge.http.post(LEADS, json=body, headers=key.bearer), 400, "validation_error")
    assert needle in error["error"]
    assert edge.http.get(LEADS, headers=key.bearer).json()["count"] == 0


@pytest.mark.parametrize("raw", [b"{bad json", b"[1, 2]", b'"text"', b"", b"null", b'{"name": }'])
def test_malformed_bodies_are_validation_errors(edge: Edge, key: Key, raw: bytes) -> None:
    response = edge.http.post(LEADS, content=raw, headers={**key.bearer, "content-type": "application/json"})
    assert_error(response, 400, "validation_error")
    assert edge.http.get(LEADS, headers=key.bearer).json()["count"] == 0


def test_invalid_patches_are_rejected_and_change_nothing(edge: Edge, key: Key) -> None:
    lead = create(edge, key, email="c@example.com")
    url = f"{LEADS}/{lead['id']}"
    for body in (
        {"email": "bad"},
        {"unknown": 1},
        {"id": str(uuid.uuid4())},
        {"email": "d@example.com", "x": 1},
    ):
        assert_error(edge.http.patch(url, json=body, headers=key.bearer), 400, "validation_error")
    assert edge.http.get(url, headers=key.bearer).json()["lead"] == lead


def test_empty_patch_changes_nothing(edge: Edge, key: Key) -> None:
    lead = create(edge, key, name="Same")
    response = edge.http.patch(f"{LEADS}/{lead['id']}", json={}, headers=key.bearer)
    assert response.status_code == 200 and response.json()["lead"] == lead


def test_another_tenants_lead_is_not_found_everywhere(edge: Edge, key: Key) -> None:
    theirs = create(edge, edge.key(), name="Theirs")
    url = f"{LEADS}/{theirs['id']}"
    assert_error(edge.http.get(url, headers=key.bearer), 404, "not_found")
    assert_error(edge.http.patch(url, json={"name": "Mine"}, headers=key.bearer), 404, "not_found")
    assert_error(edge.http.delete(url, headers=key.bearer), 404, "not_found")
    assert edge.http.get(LEADS, headers=key.bearer).json()["count"] == 0


@pytest.mark.parametrize("lead_id", ["nope", "123", str(uuid.uuid4()), "%20"])
def test_unknown_or_malformed_ids_are_not_found(edge: Edge, key: Key, lead_id: str) -> None:
    assert_error(edge.http.get(f"{LEADS}/{lead_id}", headers=key.bearer), 404, "not_found")


def test_spoofed_identity_headers_change_nothing(edge: Edge) -> None:
    reader = edge.key(scopes=["crm:read"])
    victim = edge.key()
    create(edge, victim, name="Victim's lead")
    spoof = {
        "X-Hydra-Tenant-Id": victim.tenant,
        "X-Hydra-Scopes": "crm:read crm:write",
        "X-Hydra-Key-Id": victim.id,
    }
    listed = edge.http.get(LEADS, headers={**reader.bearer, **spoof}).json()
    assert listed == {"leads": [], "count": 0}
    assert_error(
        edge.http.post(LEADS, json={"name": "x"}, headers={**reader.bearer, **spoof}), 403, "forbidden_scope"
    )
    writer = edge.key()
    lead = create_with(edge, writer, spoof)
    assert lead["tenant_id"] == writer.tenant


def test_route_policy_headers_sent_by_the_client_change_nothing(edge: Edge) -> None:
    reader = edge.key(scopes=["crm:read"])
    spoof = {"X-Hydra-Route-Auth": "public", "X-Hydra-Route-Scope": "crm:read"}
    body = assert_error(edge.http.post(LEADS, json={"name": "x"}, headers=spoof), 401, "unauthorized")
    assert body["error"] == "Missing API key. Send it as 'Authorization: Bearer hmcp_...'."
    spoofed = edge.http.post(LEADS, json={"name": "x"}, headers={**reader.bearer, **spoof})
    assert_error(spoofed, 403, "forbidden_scope")


def create_with(edge: Edge, key: Key, extra_headers: dict[str, str]) -> dict:
    response = edge.http.post(LEADS, json={"name": "mine"}, headers={**key.bearer, **extra_headers})
    assert response.status_code == 201
    return response.json()["lead"]


def test_no_grpc_headers_leak(edge: Edge, key: Key) -> None:
    responses = [
        edge.http.post(LEADS, json={"name": "x"}, headers=key.bearer),
        edge.http.get(LEADS, headers=key.bearer),
        edge.http.get(f"{LEADS}/{uuid.uuid4()}", headers=key.bearer),
        edge.http.post(LEADS, json={"bad": 1}, headers=key.bearer),
    ]
    for response in responses:
        assert not [h for h in response.headers if h.startswith(("grpc-", "x-error-body", "x-http-status"))]
