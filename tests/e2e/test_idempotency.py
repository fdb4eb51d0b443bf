"""Idempotency-Key on writes, through the edge: a retry with the key is answered as the first request
was (status, body, headers) and runs once, however concurrent; the key with another request is refused;
keys are the caller's own. On both surfaces."""

from __future__ import annotations

import threading
import uuid

import httpx

from edge.bindings import load_bindings
from services.common.access import AuthMode
from tests.e2e.conftest import Edge, Key, core_key, create_instance
from tests.e2e.test_core_routes import assert_detail
from tests.e2e.test_leads import assert_error

LEADS = "/api/v1/leads"


def with_key(key: Key, idempotency_key: str) -> dict[str, str]:
    return {**key.bearer, "Idempotency-Key": idempotency_key}


def lead_count(edge: Edge, key: Key) -> int:
    return len(edge.http.get(f"{LEADS}?limit=100", headers=key.bearer).json()["leads"])


def same_answer(first: httpx.Response, again: httpx.Response) -> None:
    """`again` replays `first`: its status, body and headers, and says it is a replay."""
    assert again.status_code == first.status_code, again.text
    assert again.content == first.content
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert again.headers.get("etag") == first.headers.get("etag")
    assert again.headers["x-request-id"] != first.headers["x-request-id"]


def test_every_keyed_write_takes_an_idempotency_key() -> None:
    writes = [b for b in load_bindings() if b.method in ("POST", "PATCH", "PUT", "DELETE")]
    keyed = (AuthMode.AUTH_MODE_SUPPORT_KEY, AuthMode.AUTH_MODE_CORE_KEY, AuthMode.AUTH_MODE_ID_TOKEN)
    assert {b.template for b in writes if b.access.auth in keyed} == {
        b.template for b in writes if b.access.idempotent
    }
    assert "/api/v1/leads" in {b.template for b in writes if b.access.idempotent}
    # Public and widget routes: their callers share a tenant and a public token.
    assert not any(b.access.idempotent for b in writes if b.template.startswith("/v1/public/"))


def test_a_retried_create_is_answered_as_the_first_and_creates_once(edge: Edge) -> None:
    key = edge.key(scopes=["crm:read", "crm:write"])
    idempotency_key = str(uuid.uuid4())
    first = edge.http.post(LEADS, json={"name": "Once"}, headers=with_key(key, idempotency_key))
    assert first.status_code == 201, first.text
    again = edge.http.post(LEADS, json={"name": "Once"}, headers=with_key(key, idempotency_key))
    same_answer(first, again)
    # The same body in another key order is the same request.
    reordered = edge.http.post(
        LEADS,
        content=b'{ "name" : "Once" }',
        headers={**with_key(key, idempotency_key), "content-type": "application/json"},
    )
    same_answer(first, reordered)
    assert lead_count(edge, key) == 1

    fresh = edge.http.post(LEADS, json={"name": "Once"}, headers=with_key(key, str(uuid.uuid4())))
    assert fresh.status_code == 201 and fresh.json()["lead"]["id"] != first.json()["lead"]["id"]
    plain = edge.http.post(LEADS, json={"name": "Once"}, headers=key.bearer)
    assert plain.status_code == 201 and "idempotent-replayed" not in plain.headers
    assert lead_count(edge, key) == 3


def test_the_key_with_another_request_is_refused(edge: Edge) -> None:
    key = edge.key(scopes=["crm:read", "crm:write"])
    idempotency_key = str(uuid.uuid4())
    first = edge.http.post(LEADS, json={"name": "A"}, headers=with_key(key, idempotency_key))
    assert first.status_code == 201
    other_body = edge.http.post(LEADS, json={"name": "B"}, headers=with_key(key, idempotency_key))
    body = assert_error(other_body, 422, "idempotency_key_reused")
    assert "Idempotency-Key" in body["error"]
    lead = first.json()["lead"]["id"]
    other_route = edge.http.patch(
        f"{LEADS}/{lead}", json={"name": "A"}, headers=with_key(key, idempotency_key)
    )
    assert_error(other_route, 422, "idempotency_key_reused")
    assert lead_count(edge, key) == 1


def test_keys_are_each_tenants_own(edge: Edge) -> None:
    mine, theirs = (edge.key(scopes=["crm:read", "crm:write"]) for _ in range(2))
    idempotency_key = str(uuid.uuid4())
    first = edge.http.post(LEADS, json={"name": "Mine"}, headers=with_key(mine, idempotency_key))
    other = edge.http.post(LEADS, json={"name": "Mine"}, headers=with_key(theirs, idempotency_key))
    assert first.status_code == other.status_code == 201
    assert "idempotent-replayed" not in other.headers
    assert other.json()["lead"]["tenant_id"] == theirs.tenant != first.json()["lead"]["tenant_id"]


def test_concurrent_requests_with_one_key_run_once(edge: Edge) -> None:
    key = edge.key(scopes=["crm:read", "crm:write"])
    idempotency_key = str(uuid.uuid4())
    answers: list[httpx.Response] = []
    start = threading.Barrier(8)

    def post() -> None:
        start.wait()
        answers.append(edge.http.post(LEADS, json={"name": "Racer"}, headers=with_key(key, idempotency_key)))

    racers = [threading.Thread(target=post) for _ in range(8)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert len({a.json()["lead"]["id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 7
    assert lead_count(edge, key) == 1


def test_an_error_is_replayed_naming_the_retry_and_a_delete_is_not_404_when_retried(edge: Edge) -> None:
    key = edge.key(scopes=["crm:read", "crm:write"])
    idempotency_key = str(uuid.uuid4())
    invalid = edge.http.post(LEADS, json={"email": None}, headers=with_key(key, idempotency_key))
    body = assert_error(invalid, 400, "validation_error")
    again = edge.http.post(LEADS, json={"email": None}, headers=with_key(key, idempotency_key))
    assert again.headers.get("idempotent-replayed") == "true"
    assert assert_error(again, 400, "validation_error") == body  # named_request: the retry's own id

    lead = edge.http.post(LEADS, json={"name": "Gone"}, headers=key.bearer).json()["lead"]["id"]
    delete_key = with_key(key, str(uuid.uuid4()))
    deleted = edge.http.delete(f"{LEADS}/{lead}", headers=delete_key)
    assert deleted.status_code == 204
    same_answer(deleted, edge.http.delete(f"{LEADS}/{lead}", headers=delete_key))
    assert edge.http.delete(f"{LEADS}/{lead}", headers=key.bearer).status_code == 404


def test_a_malformed_key_is_refused_and_nothing_is_written(edge: Edge) -> None:
    key = edge.key(scopes=["crm:read", "crm:write"])
    for bad in (b"x" * 256, "not ascii \u00e9".encode(), b"with space"):
        answer = edge.http.post(LEADS, json={"name": "No"}, headers={**key.bearer, "Idempotency-Key": bad})
        body = assert_error(answer, 400, "validation_error")
        assert "Idempotency-Key" in str(body), body
    assert lead_count(edge, key) == 0


def test_hydracore_writes_replay_in_fastapis_shape(edge: Edge) -> None:
    key = core_key(edge)
    idempotency_key = str(uuid.uuid4())
    headers = {**key.api_key, "Idempotency-Key": idempotency_key}
    first = edge.http.post("/v1/instances", json={"name": "Bot"}, headers=headers)
    assert first.status_code == 201, first.text
    same_answer(first, edge.http.post("/v1/instances", json={"name": "Bot"}, headers=headers))
    listed = edge.http.get("/v1/instances", headers=key.api_key).json()["instances"]
    assert [i["id"] for i in listed] == [first.json()["id"]]

    reused = edge.http.post("/v1/instances", json={"name": "Other"}, headers=headers)
    assert "Idempotency-Key" in str(assert_detail(reused, 422))

    instance = create_instance(edge, key)
    patch_headers = {**key.api_key, "Idempotency-Key": str(uuid.uuid4())}
    url = f"/v1/instances/{instance['id']}"
    patched = edge.http.patch(url, json={"name": "Renamed"}, headers=patch_headers)
    assert patched.status_code == 200, patched.text
    same_answer(patched, edge.http.patch(url, json={"name": "Renamed"}, headers=patch_headers))
