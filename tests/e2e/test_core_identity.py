"""Seed 001's user-scoped Bearer JWT on the HydraCore control plane: the tenant comes from the user's
membership, the scopes from its role, and a user in several tenants switches between them."""

from __future__ import annotations

import datetime as dt
import time

from edge.gatekeeper.issuer import Issuer, OidcSettings
from hydractl.cli import add_membership
from tests.e2e.conftest import Edge, core_key, create_instance, named_request
from tests.e2e.test_core_routes import assert_detail


def refused(response: object, status: int, detail: str) -> None:
    assert assert_detail(response, status) == detail


def test_a_users_token_acts_in_their_current_tenant_with_their_roles_scopes(edge: Edge) -> None:
    user = edge.user()
    first, second = core_key(edge), core_key(edge)
    mine = create_instance(edge, first, name="First's bot")["id"]
    theirs = create_instance(edge, second, name="Second's bot")["id"]
    refused(
        edge.http.get("/v1/instances", headers=user.bearer),
        403,
        "Your account is not a member of any tenant.",
    )

    add_membership(edge.env, user.email, first.tenant, "admin")
    time.sleep(0.6)  # memberships are cached as briefly as keys
    listed = edge.http.get("/v1/instances", headers=user.bearer)
    assert listed.status_code == 200, listed.text
    assert [i["id"] for i in listed.json()["instances"]] == [mine]
    assert listed.headers["x-ratelimit-limit"] == "30"  # the user's plan, not a key's limit
    assert edge.http.get(f"/v1/instances/{theirs}", headers=user.bearer).status_code == 404
    created = edge.http.post("/v1/instances", json={"name": "Made by a user"}, headers=user.bearer)
    assert created.status_code == 201 and created.json()["tenant_id"] == first.tenant
    assert edge.http.delete(f"/v1/instances/{created.json()['id']}", headers=user.bearer).status_code == 204

    add_membership(edge.env, user.email, second.tenant, "viewer")
    tenants = edge.http.get("/v1/auth/tenants", headers=user.bearer).json()["tenants"]
    assert [(t["tenant_id"], t["role"], t["current"]) for t in tenants] == [
        (first.tenant, "admin", True),
        (second.tenant, "viewer", False),
    ]
    assert (
        all(s.endswith(":read") for s in tenants[1]["scopes"]) and "instances:delete" in tenants[0]["scopes"]
    )
    switched = edge.http.post(
        "/v1/auth/switch-tenant", json={"tenant_id": second.tenant}, headers=user.bearer
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["current"] is True and switched.json()["role"] == "viewer"
    assert [i["id"] for i in edge.http.get("/v1/instances", headers=user.bearer).json()["instances"]] == [
        theirs
    ]
    refused(
        edge.http.post("/v1/instances", json={"name": "x"}, headers=user.bearer),
        403,
        "Missing required scope: instances:write",
    )
    stranger = core_key(edge)
    refused(
        edge.http.post("/v1/auth/switch-tenant", json={"tenant_id": stranger.tenant}, headers=user.bearer),
        404,
        "You are not a member of this tenant",
    )
    assert (
        edge.http.post("/v1/auth/switch-tenant", json={"tenant_id": "nope"}, headers=user.bearer).status_code
        == 422
    )
    refused(
        edge.http.get("/v1/mcp/api-key-context", headers=user.bearer),
        404,
        "This request was made with an ID token, not an API key",
    )


def test_keys_still_work_and_bad_tokens_are_401_in_fastapis_shape(edge: Edge) -> None:
    key = core_key(edge)
    assert edge.http.get("/v1/instances", headers=key.api_key).status_code == 200
    assert edge.http.get("/v1/instances", headers=key.bearer).status_code == 200
    user = edge.user()
    oidc = OidcSettings.from_env(edge.env)
    stale = Issuer(oidc.keys_dir, issuer=oidc.issuer, audience=oidc.audience).mint(
        subject="hydra|nobody",
        email=user.email,
        ttl=dt.timedelta(seconds=1),
        now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2),
    )
    response = edge.http.get("/v1/instances", headers={"Authorization": f"Bearer {stale}"})
    assert response.status_code == 401 and named_request(response) == {
        "detail": "Invalid ID token: Jwt is expired."
    }
    assert response.headers["x-ratelimit-limit"]
    refused(edge.http.get("/v1/instances"), 401, "Not authenticated")
    refused(
        edge.http.post("/v1/auth/switch-tenant", json={"tenant_id": key.tenant}, headers=key.api_key),
        401,
        "Missing ID token. Send it as 'Authorization: Bearer <ID token>'.",
    )
