"""Key self-service over HTTP: a key with keys:write mints (the secret once), changes and revokes its
tenant's keys of its own kind, never granting more than it has; keys:read lists and reads them. On
both surfaces, each in its envelope."""

from __future__ import annotations

import datetime as dt
import time
import uuid

from tests.e2e.conftest import Edge, Key, core_key
from tests.e2e.test_core_routes import assert_detail
from tests.e2e.test_leads import assert_error
from tests.support.polling import wait_until

ADMIN = ["keys:read", "keys:write", "crm:read", "crm:write"]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def mint(edge: Edge, key: Key, **fields: object) -> dict:
    response = edge.http.post("/api/v1/keys", json={"scopes": ["crm:read"], **fields}, headers=key.bearer)
    assert response.status_code == 201, response.text
    return response.json()["key"]


def test_a_minted_key_works_with_its_scopes_and_its_secret_is_shown_once(edge: Edge) -> None:
    admin = edge.key(scopes=ADMIN, rate_limit=500)
    made = mint(edge, admin, name="zapier", rate_limit_per_minute=100)
    assert made["secret"].startswith("hmcp_") and made["secret"].startswith(made["prefix"])
    assert (
        made["scopes"] == ["crm:read"] and made["name"] == "zapier" and made["rate_limit_per_minute"] == 100
    )
    assert made["revoked_at"] is None and made["expires_at"] is None and made["last_used_at"] is None

    reads = edge.http.get("/api/v1/leads", headers=bearer(made["secret"]))
    assert reads.status_code == 200 and reads.headers["x-ratelimit-limit"] == "100"
    assert_error(
        edge.http.post("/api/v1/leads", json={"name": "x"}, headers=bearer(made["secret"])),
        403,
        "forbidden_scope",
    )

    listed = edge.http.get("/api/v1/keys", headers=admin.bearer).json()
    assert [k["id"] for k in listed["keys"]] == [made["id"], admin.id] and listed["count"] == 2
    assert all("secret" not in k for k in listed["keys"])
    fetched = edge.http.get(f"/api/v1/keys/{made['id']}", headers=admin.bearer).json()["key"]
    assert "secret" not in fetched and fetched["id"] == made["id"]
    used = wait_until(
        lambda: edge.http.get(f"/api/v1/keys/{made['id']}", headers=admin.bearer).json()["key"][
            "last_used_at"
        ],
        what="last_used_at",
    )
    assert used is not None


def test_a_key_never_grants_more_than_the_key_that_mints_it(edge: Edge) -> None:
    admin = edge.key(scopes=["keys:write", "keys:read", "crm:read"], rate_limit=100)
    beyond = edge.http.post("/api/v1/keys", json={"scopes": ["crm:write"]}, headers=admin.bearer)
    assert "crm:write" in assert_error(beyond, 400, "validation_error")["error"]
    wildcard = edge.http.post("/api/v1/keys", json={"scopes": ["crm:*"]}, headers=admin.bearer)
    assert_error(wildcard, 400, "validation_error")
    faster = edge.http.post(
        "/api/v1/keys", json={"scopes": ["crm:read"], "rate_limit_per_minute": 101}, headers=admin.bearer
    )
    assert_error(faster, 400, "validation_error")
    assert mint(edge, admin)["rate_limit_per_minute"] == 100  # the calling key's, when not given
    for bad in (
        {},
        {"scopes": []},
        {"scopes": ["crm:read"], "kind": "hc_live"},
        {"scopes": ["crm:read"], "expires_at": "2001-01-01T00:00:00Z"},
        {"scopes": ["crm:read"], "expires_at": "soon"},
    ):
        assert_error(edge.http.post("/api/v1/keys", json=bad, headers=admin.bearer), 400, "validation_error")
    reader = edge.key(admin.tenant, scopes=["keys:read", "crm:read"])
    assert_error(
        edge.http.post("/api/v1/keys", json={"scopes": ["crm:read"]}, headers=reader.bearer),
        403,
        "forbidden_scope",
    )
    outsider = edge.key(admin.tenant, scopes=["crm:read"])
    assert_error(edge.http.get("/api/v1/keys", headers=outsider.bearer), 403, "forbidden_scope")


def test_a_key_is_changed_expired_and_revoked_and_stops_working(edge: Edge) -> None:
    admin = edge.key(scopes=ADMIN, rate_limit=500)
    made = mint(edge, admin)
    url = f"/api/v1/keys/{made['id']}"
    changed = edge.http.patch(url, json={"name": "renamed", "rate_limit_per_minute": 7}, headers=admin.bearer)
    assert changed.status_code == 200, changed.text
    assert changed.json()["key"]["name"] == "renamed" and changed.json()["key"]["rate_limit_per_minute"] == 7
    assert_error(
        edge.http.patch(url, json={"scopes": ["crm:read"]}, headers=admin.bearer), 400, "validation_error"
    )
    assert_error(
        edge.http.patch(url, json={"rate_limit_per_minute": 501}, headers=admin.bearer),
        400,
        "validation_error",
    )

    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat()
    expiring = mint(edge, admin, expires_at=soon)
    assert edge.http.get("/api/v1/leads", headers=bearer(expiring["secret"])).status_code == 200
    wait_until(
        lambda: edge.http.get("/api/v1/leads", headers=bearer(expiring["secret"])).status_code == 401,
        timeout=10,
        what="the expired key refused",
    )

    assert edge.http.delete(url, headers=admin.bearer).status_code == 204
    assert edge.http.delete(url, headers=admin.bearer).status_code == 204  # revoked once, kept revoked
    revoked = edge.http.get(url, headers=admin.bearer).json()["key"]
    assert revoked["revoked_at"] is not None
    wait_until(
        lambda: edge.http.get("/api/v1/leads", headers=bearer(made["secret"])).status_code == 401,
        timeout=5,
        what="the revoked key refused",
    )


def test_keys_are_each_tenants_and_each_surfaces_own(edge: Edge) -> None:
    admin = edge.key(scopes=ADMIN)
    other = edge.key(scopes=ADMIN)
    theirs = mint(edge, other)
    core = core_key(edge, admin.tenant)
    for path in (f"/api/v1/keys/{theirs['id']}", f"/api/v1/keys/{core.id}", f"/api/v1/keys/{uuid.uuid4()}"):
        assert_error(edge.http.get(path, headers=admin.bearer), 404, "not_found")
        assert_error(edge.http.patch(path, json={"name": "x"}, headers=admin.bearer), 404, "not_found")
        assert_error(edge.http.delete(path, headers=admin.bearer), 404, "not_found")
    assert edge.http.get("/api/v1/leads", headers=bearer(theirs["secret"])).status_code == 200
    assert [k["id"] for k in edge.http.get("/api/v1/keys", headers=admin.bearer).json()["keys"]] == [admin.id]


def test_hydracore_keys_in_fastapis_shape(edge: Edge) -> None:
    admin = core_key(edge, scopes=["keys:read", "keys:write", "instances:read"])
    created = edge.http.post(
        "/v1/keys", json={"scopes": ["instances:read"], "name": "ci"}, headers=admin.api_key
    )
    assert created.status_code == 201, created.text
    made = created.json()
    assert made["secret"].startswith("hc_live_") and made["scopes"] == ["instances:read"]
    assert edge.http.get("/v1/instances", headers={"X-Api-Key": made["secret"]}).status_code == 200
    beyond = edge.http.post("/v1/keys", json={"scopes": ["instances:write"]}, headers=admin.api_key)
    assert assert_detail(beyond, 422)[0]["loc"] == ["body", "scopes"]
    assert_detail(edge.http.get("/v1/keys/not-a-uuid", headers=admin.api_key), 422)
    listed = edge.http.get("/v1/keys", headers=admin.api_key).json()
    assert [k["id"] for k in listed["keys"]] == [made["id"], admin.id]
    assert edge.http.delete(f"/v1/keys/{made['id']}", headers=admin.api_key).status_code == 204
    time.sleep(1)
    assert edge.http.get("/v1/instances", headers={"X-Api-Key": made["secret"]}).status_code == 401


def test_a_key_is_conditional_like_every_resource(edge: Edge) -> None:
    admin = edge.key(scopes=ADMIN)
    made = mint(edge, admin)
    url = f"/api/v1/keys/{made['id']}"
    first = edge.http.get(url, headers=admin.bearer)
    tag = first.headers["etag"]
    assert edge.http.get(url, headers={**admin.bearer, "If-None-Match": tag}).status_code == 304
    renamed = edge.http.patch(url, json={"name": "one"}, headers={**admin.bearer, "If-Match": tag})
    assert renamed.status_code == 200 and renamed.headers["etag"] != tag
    stale = edge.http.patch(url, json={"name": "two"}, headers={**admin.bearer, "If-Match": tag})
    assert_error(stale, 412, "precondition_failed")
    assert_error(edge.http.delete(url, headers={**admin.bearer, "If-Match": tag}), 412, "precondition_failed")
    current = renamed.headers["etag"]
    assert edge.http.delete(url, headers={**admin.bearer, "If-Match": current}).status_code == 204
