"""The workflow marketplace (seed 002) through the real edge: workflows, versions, forks, libraries,
ratings, the marketplace, users, plans and the surface's envelopes."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import re
import threading
import time
from typing import Any

import jwt
import pytest

from edge.gatekeeper.issuer import Issuer, OidcSettings
from hydractl.cli import cmd_workflows_feature, parser
from tests.e2e.conftest import Edge, User, named_request

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
WORKFLOW_FIELDS = {
    "workflowId",
    "userId",
    "name",
    "description",
    "visibility",
    "category",
    "tags",
    "currentVersion",
    "stats",
    "featured",
    "createdAt",
    "updatedAt",
}


def manifest(name: str = "Bug Fix Workflow", steps: tuple[str, ...] = ("find", "fix")) -> dict[str, Any]:
    return {
        "$schema": "https://hydra.opiusai.com/schemas/workflow/v1.0.json",
        "manifest_version": "1.0",
        "name": name,
        "steps": [{"id": s, "name": s.title(), "instructions": f"Do {s}."} for s in steps],
    }


def workflow_body(name: str = "Bug Fix Workflow", **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": "Find and fix bugs",
        "manifest": manifest(name),
        "visibility": "public",
        "category": "development",
        "tags": ["bug-fix", "testing"],
        **fields,
    }


def create_workflow(edge: Edge, user: User, **fields: Any) -> dict[str, Any]:
    response = edge.http.post("/v1/workflows", json=workflow_body(**fields), headers=user.bearer)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True
    return body["data"]


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    """The marketplace error envelope of a response, checked for its status and code."""
    assert response.status_code == status, response.text
    body = named_request(response)
    assert set(body) == {"success", "error"} and body["success"] is False
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


def test_a_workflow_is_created_read_listed_replaced_with_versions_and_deleted(edge: Edge) -> None:
    user = edge.user()
    created = create_workflow(edge, user)
    assert WORKFLOW_FIELDS | {"manifest"} == set(created)
    assert re.fullmatch(r"wf_[0-9a-f]{16}", created["workflowId"])
    assert created["userId"] == user.id and created["currentVersion"] == "1.0.0"
    assert created["stats"] == {"forks": 0, "subscribers": 0, "rating": 0, "ratingCount": 0}
    assert created["manifest"] == manifest() and created["tags"] == ["bug-fix", "testing"]
    assert ISO_Z.match(created["createdAt"]) and created["createdAt"] == created["updatedAt"]
    url = f"/v1/workflows/{created['workflowId']}"
    assert edge.http.get(url, headers=user.bearer).json() == {"success": True, "data": created}

    listed = edge.http.get("/v1/workflows", headers=user.bearer).json()
    assert listed["pagination"] == {"hasMore": False, "count": 1}
    (item,) = listed["data"]
    assert set(item) == WORKFLOW_FIELDS and item["workflowId"] == created["workflowId"]

    # Each replace keeps the manifest it replaces as a version: a step added is minor, a wording
    # change a patch, a step removed major; the same manifest again is no new version.
    body = workflow_body(description="Now with tests")
    for steps, version in ((("find", "fix", "test"), "1.1.0"), (("find", "fix", "test"), "1.1.0")):
        body["manifest"] = manifest(steps=steps)
        replaced = edge.http.put(url, json=body, headers=user.bearer)
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["data"]["currentVersion"] == version
    body["manifest"]["steps"][0]["instructions"] = "Find it faster."
    assert edge.http.put(url, json=body, headers=user.bearer).json()["data"]["currentVersion"] == "1.1.1"
    body["manifest"] = manifest(steps=("fix",))
    final = edge.http.put(url, json=body, headers=user.bearer).json()["data"]
    assert final["currentVersion"] == "2.0.0" and final["description"] == "Now with tests"
    versions = edge.http.get(f"{url}/versions", headers=user.bearer).json()["data"]
    assert [v["version"] for v in versions] == ["2.0.0", "1.1.1", "1.1.0", "1.0.0"]
    assert versions[-1]["manifest"] == manifest()

    deleted = edge.http.delete(url, headers=user.bearer)
    assert deleted.status_code == 200
    assert deleted.json() == {"success": True, "data": {"workflowId": created["workflowId"], "deleted": True}}
    error_of(edge.http.get(url, headers=user.bearer), 404, "NOT_FOUND")
    error_of(edge.http.get(f"{url}/versions", headers=user.bearer), 404, "NOT_FOUND")


def test_another_users_private_workflow_does_not_exist_for_them_and_a_public_one_is_read_only(
    edge: Edge,
) -> None:
    owner, other = edge.user(), edge.user()
    private = create_workflow(edge, owner, visibility="private")["workflowId"]
    public = create_workflow(edge, owner)["workflowId"]
    for method, path, body in (
        ("GET", f"/v1/workflows/{private}", None),
        ("PUT", f"/v1/workflows/{private}", workflow_body()),
        ("DELETE", f"/v1/workflows/{private}", None),
        ("GET", f"/v1/workflows/{private}/versions", None),
        ("POST", f"/v1/workflows/{private}/fork", {}),
        ("POST", f"/v1/library/{private}", {}),
        ("PUT", f"/v1/workflows/{private}/rating", {"rating": 5}),
    ):
        error_of(edge.http.request(method, path, json=body, headers=other.bearer), 404, "NOT_FOUND")
    assert edge.http.get(f"/v1/workflows/{public}", headers=other.bearer).status_code == 200
    error_of(
        edge.http.put(f"/v1/workflows/{public}", json=workflow_body(), headers=other.bearer), 403, "FORBIDDEN"
    )
    error_of(edge.http.delete(f"/v1/workflows/{public}", headers=other.bearer), 403, "FORBIDDEN")
    # Lists are each user's own.
    assert edge.http.get("/v1/workflows", headers=other.bearer).json()["data"] == []
    mine = edge.http.get("/v1/workflows?visibility=private", headers=owner.bearer).json()["data"]
    assert [w["workflowId"] for w in mine] == [private]
    for bad in ("wf_", "wf_0123456789abcdeg", "x" * 300, "..%2f..%2fusers"):
        error_of(edge.http.get(f"/v1/workflows/{bad}", headers=owner.bearer), 404, "NOT_FOUND")


def test_an_invalid_workflow_is_400_naming_each_failing_path(edge: Edge) -> None:
    user = edge.user()
    bad_manifest = {
        "manifest_version": "2.0",
        "steps": [{"id": "1st", "name": "", "instructions": "x"}, {"id": "b", "name": "B", "extra": 1}],
    }
    response = edge.http.post("/v1/workflows", json=workflow_body(manifest=bad_manifest), headers=user.bearer)
    error = error_of(response, 400, "VALIDATION_ERROR")
    locs = {tuple(e["loc"]) for e in error["details"]["errors"]}
    assert {
        ("body", "manifest"),  # name is missing
        ("body", "manifest", "manifest_version"),
        ("body", "manifest", "steps", 0, "id"),
        ("body", "manifest", "steps", 0, "name"),
        ("body", "manifest", "steps", 1),  # instructions missing, "extra" not allowed
    } <= locs
    duplicate = manifest(steps=("a", "a"))
    error = error_of(
        edge.http.post("/v1/workflows", json=workflow_body(manifest=duplicate), headers=user.bearer),
        400,
        "VALIDATION_ERROR",
    )
    assert error["details"]["errors"][0]["loc"] == ["body", "manifest", "steps", 1, "id"]
    for body in (
        {**workflow_body(), "visibility": "secret"},
        {**workflow_body(), "name": ""},
        {**workflow_body(), "unknown": 1},
        {k: v for k, v in workflow_body().items() if k != "manifest"},
        {**workflow_body(), "tags": ["x" * 31]},
    ):
        error_of(edge.http.post("/v1/workflows", json=body, headers=user.bearer), 400, "VALIDATION_ERROR")
    error_of(
        edge.http.post(
            "/v1/workflows", content=b"{not json", headers={**user.bearer, "content-type": "application/json"}
        ),
        400,
        "VALIDATION_ERROR",
    )
    assert edge.http.get("/v1/workflows", headers=user.bearer).json()["data"] == []  # nothing half-written
    schema = edge.http.get("/schemas/workflow/v1.0.json")
    assert schema.status_code == 200
    assert schema.json()["$id"] == "https://hydra.opiusai.com/schemas/workflow/v1.0.json"


def test_pages_follow_signed_cursors_without_gaps_or_repeats_while_workflows_are_added(edge: Edge) -> None:
    user = edge.user()
    edge_plan(edge, user, "enterprise")
    first = [create_workflow(edge, user, name=f"Flow {i}")["workflowId"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    added: list[str] = []
    while True:
        query = "/v1/workflows?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = edge.http.get(query, headers=user.bearer).json()
        seen.extend(w["workflowId"] for w in page["data"])
        assert page["pagination"]["count"] == len(page["data"])
        if len(added) < 2:  # newer rows land before the cursor: never in a later page
            added.append(create_workflow(edge, user, name="Late")["workflowId"])
        if not page["pagination"]["hasMore"]:
            assert "nextCursor" not in page["pagination"]
            break
        cursor = page["pagination"]["nextCursor"]
    assert seen == list(reversed(first))
    assert len(set(seen)) == len(seen)

    page = edge.http.get("/v1/workflows?limit=2", headers=user.bearer).json()["pagination"]
    raw = base64.urlsafe_b64decode(page["nextCursor"] + "==")
    forged = base64.urlsafe_b64encode(raw[:12] + raw[12:].replace(b"20", b"19")).decode().rstrip("=")
    for cursor in (forged, "abc", "eyJ4IjoxfQ", "!!"):
        error = error_of(
            edge.http.get(f"/v1/workflows?cursor={cursor}", headers=user.bearer), 400, "VALIDATION_ERROR"
        )
        assert error["details"]["errors"][0]["loc"] == ["query", "cursor"]
    for limit in ("0", "101", "-1", "abc", "1.5"):
        error_of(edge.http.get(f"/v1/workflows?limit={limit}", headers=user.bearer), 400, "VALIDATION_ERROR")
    assert edge.http.get("/v1/workflows?limit=100", headers=user.bearer).status_code == 200
    default = edge.http.get("/v1/workflows", headers=user.bearer).json()["pagination"]
    assert default["count"] == 9 and default["hasMore"] is False
    error_of(edge.http.get("/v1/workflows?visibility=hidden", headers=user.bearer), 400, "VALIDATION_ERROR")


def edge_plan(edge: Edge, user: User, plan: str) -> None:
    args = parser().parse_args(["users", "set-plan", user.email, plan])
    args.handler(args, edge.env)
    time.sleep(0.6)  # the gatekeeper's cached plan expires (HYDRA_USER_CACHE_MS=500 in these tests)


def test_a_fork_is_a_private_copy_in_the_forkers_library_counted_on_the_original(edge: Edge) -> None:
    owner, forker = edge.user(), edge.user()
    original = create_workflow(edge, owner)
    url = f"/v1/workflows/{original['workflowId']}"
    response = edge.http.post(f"{url}/fork", json={}, headers=forker.bearer)
    assert response.status_code == 201, response.text
    copy_ = response.json()["data"]
    assert copy_["name"] == "Bug Fix Workflow (copy)" and copy_["visibility"] == "private"
    assert copy_["userId"] == forker.id and copy_["currentVersion"] == "1.0.0"
    assert copy_["forkedFrom"] == {
        "workflowId": original["workflowId"],
        "userId": owner.id,
        "version": "1.0.0",
    }
    assert copy_["manifest"] == original["manifest"]
    named = edge.http.post(f"{url}/fork", json={"name": "My Custom Workflow"}, headers=forker.bearer)
    assert named.json()["data"]["name"] == "My Custom Workflow"
    assert edge.http.get(url, headers=owner.bearer).json()["data"]["stats"]["forks"] == 2
    library = edge.http.get("/v1/library", headers=forker.bearer).json()["data"]
    assert {(e["workflowId"], e["sourceType"], e["sourceUserId"]) for e in library} == {
        (copy_["workflowId"], "forked", owner.id),
        (named.json()["data"]["workflowId"], "forked", owner.id),
    }
    # The copy is independent: changing it leaves the original alone; deleting it uncounts the fork.
    edge.http.put(
        f"/v1/workflows/{copy_['workflowId']}", json=workflow_body(name="Mine"), headers=forker.bearer
    )
    assert edge.http.get(url, headers=owner.bearer).json()["data"]["name"] == "Bug Fix Workflow"
    edge.http.delete(f"/v1/workflows/{copy_['workflowId']}", headers=forker.bearer)
    assert edge.http.get(url, headers=owner.bearer).json()["data"]["stats"]["forks"] == 1
    error_of(edge.http.post(f"{url}/fork", json={"name": ""}, headers=forker.bearer), 400, "VALIDATION_ERROR")


def test_a_library_holds_subscriptions_pinned_or_following_and_counts_subscribers(edge: Edge) -> None:
    owner, reader = edge.user(), edge.user()
    workflow = create_workflow(edge, owner)
    workflow_id = workflow["workflowId"]
    added = edge.http.post(
        f"/v1/library/{workflow_id}",
        json={"enabledAdapters": ["cursor", "claude", "cursor"], "autoUpdate": False},
        headers=reader.bearer,
    )
    assert added.status_code == 201, added.text
    entry = added.json()["data"]
    assert re.fullmatch(r"lib_[0-9a-f]{16}", entry["libraryId"])
    assert entry["sourceType"] == "subscribed" and entry["sourceUserId"] == owner.id
    assert entry["enabledAdapters"] == ["claude", "cursor"] and entry["autoUpdate"] is False
    assert entry["workflowVersion"] == "1.0.0" and entry["isActive"] is True
    assert entry["workflowName"] == "Bug Fix Workflow" and entry["userId"] == reader.id
    error_of(edge.http.post(f"/v1/library/{workflow_id}", json={}, headers=reader.bearer), 409, "CONFLICT")
    assert (
        edge.http.get(f"/v1/workflows/{workflow_id}", headers=owner.bearer).json()["data"]["stats"][
            "subscribers"
        ]
        == 1
    )

    # A new version: the pinned entry keeps its version until it follows again.
    body = workflow_body(manifest=manifest(steps=("find", "fix", "test")))
    edge.http.put(f"/v1/workflows/{workflow_id}", json=body, headers=owner.bearer)
    url = f"/v1/library/{workflow_id}"
    assert library_of(edge, reader)[workflow_id]["workflowVersion"] == "1.0.0"
    following = edge.http.patch(url, json={"autoUpdate": True}, headers=reader.bearer).json()["data"]
    assert following["workflowVersion"] == "1.1.0" and following["autoUpdate"] is True
    paused = edge.http.patch(
        url, json={"isActive": False, "enabledAdapters": ["codex"]}, headers=reader.bearer
    )
    assert paused.json()["data"]["isActive"] is False and paused.json()["data"]["enabledAdapters"] == [
        "codex"
    ]
    active = edge.http.get("/v1/library?activeOnly=true", headers=reader.bearer).json()["data"]
    assert workflow_id not in {e["workflowId"] for e in active}
    for bad in ({"enabledAdapters": ["vim"]}, {"isActive": "yes"}, {"other": 1}):
        error_of(edge.http.patch(url, json=bad, headers=reader.bearer), 400, "VALIDATION_ERROR")
    error_of(
        edge.http.post(f"/v1/library/{workflow_id}", json={"isActive": False}, headers=edge.user().bearer),
        400,
        "VALIDATION_ERROR",
    )

    removed = edge.http.delete(url, headers=reader.bearer)
    assert removed.json() == {"success": True, "data": {"workflowId": workflow_id, "deleted": True}}
    error_of(edge.http.delete(url, headers=reader.bearer), 404, "NOT_FOUND")
    error_of(edge.http.patch(url, json={}, headers=reader.bearer), 404, "NOT_FOUND")
    assert (
        edge.http.get(f"/v1/workflows/{workflow_id}", headers=owner.bearer).json()["data"]["stats"][
            "subscribers"
        ]
        == 0
    )
    # The owner's own workflow is in their library from the start.
    assert library_of(edge, owner)[workflow_id]["sourceType"] == "owned"


def library_of(edge: Edge, user: User) -> dict[str, dict[str, Any]]:
    entries = edge.http.get("/v1/library?limit=100", headers=user.bearer).json()["data"]
    return {e["workflowId"]: e for e in entries}


def test_ratings_come_from_users_who_hold_the_workflow_and_are_real_means(edge: Edge) -> None:
    owner, first, second = edge.user(), edge.user(), edge.user()
    workflow_id = create_workflow(edge, owner)["workflowId"]
    url = f"/v1/workflows/{workflow_id}/rating"
    error_of(edge.http.put(url, json={"rating": 5}, headers=first.bearer), 409, "CONFLICT")
    error_of(edge.http.put(url, json={"rating": 5}, headers=owner.bearer), 403, "FORBIDDEN")
    for user in (first, second):
        edge.http.post(f"/v1/library/{workflow_id}", json={}, headers=user.bearer)
    edge.http.put(url, json={"rating": 5}, headers=first.bearer)
    stats = edge.http.put(url, json={"rating": 2}, headers=second.bearer).json()["data"]["stats"]
    assert stats["rating"] == 3.5 and stats["ratingCount"] == 2
    stats = edge.http.put(url, json={"rating": 4}, headers=second.bearer).json()["data"]["stats"]
    assert stats["rating"] == 4.5 and stats["ratingCount"] == 2  # a second rating replaces the first
    for bad in (0, 6, 2.5, "5", None):
        error_of(edge.http.put(url, json={"rating": bad}, headers=first.bearer), 400, "VALIDATION_ERROR")
    edge.http.delete(f"/v1/library/{workflow_id}", headers=first.bearer)  # the rating leaves with it
    stats = edge.http.get(f"/v1/workflows/{workflow_id}", headers=owner.bearer).json()["data"]["stats"]
    assert stats == {"forks": 0, "subscribers": 1, "rating": 4, "ratingCount": 1}


def test_the_marketplace_browses_searches_and_features_public_workflows_only(edge: Edge) -> None:
    owner, fan = edge.user(), edge.user()
    tag = f"t{time.time_ns()}"  # categories unique to this test: the marketplace is every user's
    linter = create_workflow(
        edge, owner, name="Lint fixer", category=tag, description="Fixes lint errors", tags=["lint"]
    )
    review = create_workflow(
        edge, owner, name="Code review", category=tag, description="Reviews pull requests", tags=["review"]
    )
    hidden = create_workflow(edge, owner, name="Secret lint", category=tag, visibility="private")
    edge.http.post(f"/v1/library/{review['workflowId']}", json={}, headers=fan.bearer)
    edge.http.put(f"/v1/workflows/{linter['workflowId']}/rating", json={"rating": 5}, headers=fan.bearer)

    def browse(query: str) -> list[str]:
        response = edge.http.get(f"/v1/marketplace?category={tag}&{query}", headers=fan.bearer)
        assert response.status_code == 200, response.text
        return [w["name"] for w in response.json()["data"]]

    assert browse("sort=recent") == ["Code review", "Lint fixer"]
    assert browse("sort=popular") == ["Code review", "Lint fixer"]  # one subscriber
    assert browse("") == browse("sort=popular")
    edge.http.post(f"/v1/library/{linter['workflowId']}", json={}, headers=fan.bearer)
    edge.http.put(f"/v1/workflows/{linter['workflowId']}/rating", json={"rating": 5}, headers=fan.bearer)
    assert browse("sort=rating") == ["Lint fixer", "Code review"]
    assert browse("sort=recent&limit=1") == ["Code review"]
    error_of(edge.http.get("/v1/marketplace?sort=best", headers=fan.bearer), 400, "VALIDATION_ERROR")

    def search(q: str) -> list[str]:
        response = edge.http.get("/v1/marketplace/search", params={"q": q, "limit": 100}, headers=fan.bearer)
        assert response.status_code == 200, response.text
        return [w["workflowId"] for w in response.json()["data"]]

    assert search(f"lint {tag}") == [
        linter["workflowId"]
    ]  # stemmed: "lint" finds "Lint", never the private one
    assert search(f"fixing {tag}") == [linter["workflowId"]]
    assert search(f"reviewing pull {tag}") == [review["workflowId"]]
    assert hidden["workflowId"] not in search("secret lint")
    for hostile in ('" OR 1=1 --', "lint* NEAR(a b)", "a:b ^c", "'); DROP TABLE workflows; --"):
        assert (
            edge.http.get("/v1/marketplace/search", params={"q": hostile}, headers=fan.bearer).status_code
            == 200
        )
    for bad in ("", "   ", "!!!", "x" * 201):
        error_of(
            edge.http.get("/v1/marketplace/search", params={"q": bad}, headers=fan.bearer),
            400,
            "VALIDATION_ERROR",
        )
    error_of(edge.http.get("/v1/marketplace/search", headers=fan.bearer), 400, "VALIDATION_ERROR")

    featured_before = edge.http.get("/v1/marketplace/featured?limit=100", headers=fan.bearer).json()["data"]
    assert review["workflowId"] not in {w["workflowId"] for w in featured_before}
    feature = parser().parse_args(["workflows", "feature", review["workflowId"]])
    cmd_workflows_feature(feature, edge.env)
    featured = edge.http.get("/v1/marketplace/featured", headers=fan.bearer).json()["data"]
    assert featured[0]["workflowId"] == review["workflowId"] and featured[0]["featured"] is True
    with pytest.raises(Exception, match="public"):
        cmd_workflows_feature(parser().parse_args(["workflows", "feature", hidden["workflowId"]]), edge.env)


def test_users_me_counts_and_deleting_an_account_takes_everything_in_one_go(edge: Edge) -> None:
    user, other = edge.user(), edge.user()
    theirs = create_workflow(edge, other)["workflowId"]
    edge.http.post(f"/v1/library/{theirs}", json={}, headers=user.bearer)
    edge.http.put(f"/v1/workflows/{theirs}/rating", json={"rating": 1}, headers=user.bearer)
    mine = create_workflow(edge, user)["workflowId"]
    edge.http.put(
        f"/v1/workflows/{mine}", json=workflow_body(manifest=manifest(steps=("a",))), headers=user.bearer
    )
    edge.http.post(f"/v1/library/{mine}", json={}, headers=other.bearer)
    edge.http.post(f"/v1/workflows/{theirs}/fork", json={}, headers=user.bearer)
    me = edge.http.get("/v1/users/me", headers=user.bearer).json()
    assert me["success"] is True
    assert me["data"] | {"createdAt": "", "updatedAt": ""} == {
        "userId": user.id,
        "email": user.email,
        "plan": "free",
        "workflowCount": 2,
        "deploymentCount": 0,
        "subscriptionCount": 1,
        "createdAt": "",
        "updatedAt": "",
    }
    deleted = edge.http.delete("/v1/users/me", headers=user.bearer).json()["data"]
    assert deleted["userId"] == user.id and deleted["deleted"] is True and ISO_Z.match(deleted["deletedAt"])
    assert deleted["stats"] == {
        "workflows": 2,
        "workflowVersions": 3,
        "deployments": 0,
        "deploymentPrompts": 0,
        "deploymentLookups": 0,
        "subscriptions": 1,
        "subscriberEntries": 1,
        "billingRecords": 0,
    }
    error_of(edge.http.get(f"/v1/workflows/{mine}", headers=other.bearer), 404, "NOT_FOUND")
    assert mine not in library_of(edge, other)
    stats = edge.http.get(f"/v1/workflows/{theirs}", headers=other.bearer).json()["data"]["stats"]
    assert stats == {"forks": 0, "subscribers": 0, "rating": 0, "ratingCount": 0}


def test_bad_id_tokens_are_401_in_the_envelope(edge: Edge) -> None:
    user = edge.user()
    oidc = OidcSettings.from_env(edge.env)
    real = oidc.issuer_here()
    claims = jwt.decode(user.token, options={"verify_signature": False})
    now = dt.datetime.now(dt.UTC)
    other_keys = Issuer(oidc.keys_dir.parent / "elsewhere", issuer=oidc.issuer, audience=oidc.audience)
    head, _payload, signature = user.token.split(".")
    forged_claims = (
        base64.urlsafe_b64encode(json.dumps({**claims, "sub": "someone-else"}).encode()).decode().rstrip("=")
    )
    tokens = {
        "expired": real.mint(
            subject=claims["sub"],
            email=user.email,
            ttl=dt.timedelta(seconds=1),
            now=now - dt.timedelta(hours=1),
        ),
        "wrong audience": Issuer(oidc.keys_dir, issuer=oidc.issuer, audience="another-app").mint(
            subject=claims["sub"], email=user.email, ttl=dt.timedelta(hours=1)
        ),
        "wrong issuer": Issuer(oidc.keys_dir, issuer="https://evil.example", audience=oidc.audience).mint(
            subject=claims["sub"], email=user.email, ttl=dt.timedelta(hours=1)
        ),
        "unsigned": jwt.encode(claims, None, algorithm="none"),
        "tampered": f"{head}.{forged_claims}.{signature}",
        "another key": other_keys.mint(subject=claims["sub"], email=user.email, ttl=dt.timedelta(hours=1)),
        "garbage": "not-a-jwt",
        "an API key": edge.key().secret,
    }
    reasons = {
        "expired": "Jwt is expired",
        "wrong audience": "Audiences in Jwt are not allowed",
        "wrong issuer": "Jwt issuer is not configured",
        "another key": "Jwks doesn't have key to match kid",
        "tampered": "Jwt verification fails",
    }
    for name, token in tokens.items():
        response = edge.http.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})
        error = error_of(response, 401, "UNAUTHORIZED")
        assert error["message"].startswith("Invalid ID token: "), (name, error)
        assert reasons.get(name, "") in error["message"], (name, error)
        # Refusals carry the caller's window too (bad credentials count per client address).
        assert int(response.headers["x-ratelimit-remaining"]) < int(response.headers["x-ratelimit-limit"])
        assert int(response.headers["x-ratelimit-reset"]) > time.time()
    missing = error_of(edge.http.get("/v1/users/me"), 401, "UNAUTHORIZED")
    assert missing["message"] == "Missing ID token. Send it as 'Authorization: Bearer <ID token>'."
    assert edge.http.get("/v1/users/me", headers=user.bearer).status_code == 200
    # Headers the edge fills from a verified token cannot be sent by a client.
    spoofed = {
        **user.bearer,
        "x-hydra-jwt-sub": "someone-else",
        "x-hydra-user-id": "00000000-0000-0000-0000-000000000000",
    }
    assert edge.http.get("/v1/users/me", headers=spoofed).json()["data"]["userId"] == user.id
    jwks = edge.http.get("/.well-known/jwks.json").json()
    assert real.current_kid() in {k["kid"] for k in jwks["keys"]} and all("d" not in k for k in jwks["keys"])


def test_requests_are_limited_per_minute_by_plan_with_headers_on_every_answer(edge: Edge) -> None:
    user = edge.user()
    resets = set()
    for sent in range(1, 31):
        response = edge.http.get("/v1/workflows/wf_0000000000000000", headers=user.bearer)  # a 404 counts
        assert response.status_code == 404
        assert response.headers["x-ratelimit-limit"] == "30"
        assert response.headers["x-ratelimit-remaining"] == str(30 - sent)
        resets.add(int(response.headers["x-ratelimit-reset"]))
    assert all(time.time() < reset <= time.time() + 61 for reset in resets)
    refused = edge.http.get("/v1/workflows", headers=user.bearer)
    error_of(refused, 429, "RATE_LIMITED")
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert int(refused.headers["x-ratelimit-reset"]) <= time.time() + 61
    edge_plan(edge, user, "pro")
    allowed = edge.http.get("/v1/workflows", headers=user.bearer)
    assert allowed.status_code == 200 and allowed.headers["x-ratelimit-limit"] == "100"
    assert allowed.headers["x-ratelimit-remaining"] == "69"  # the same window, under the new limit


def test_the_plan_caps_how_many_workflows_a_user_owns(edge: Edge) -> None:
    user = edge.user()
    for index in range(10):
        create_workflow(edge, user, name=f"Flow {index}")
    error = error_of(
        edge.http.post("/v1/workflows", json=workflow_body(), headers=user.bearer), 402, "PLAN_LIMIT_EXCEEDED"
    )
    assert error["details"] == {"limit": 10, "plan": "free"}
    source = create_workflow(edge, edge.user())["workflowId"]
    error_of(
        edge.http.post(f"/v1/workflows/{source}/fork", json={}, headers=user.bearer),
        402,
        "PLAN_LIMIT_EXCEEDED",
    )
    assert edge.http.get("/v1/users/me", headers=user.bearer).json()["data"]["workflowCount"] == 10


def test_concurrent_subscriptions_count_each_subscriber_once(edge: Edge) -> None:
    owner = edge.user()
    workflow_id = create_workflow(edge, owner)["workflowId"]
    readers = [edge.user() for _ in range(6)]
    statuses: list[int] = []

    def subscribe(user: User) -> None:
        for _ in range(2):  # each twice: the second is 409
            statuses.append(
                edge.http.post(f"/v1/library/{workflow_id}", json={}, headers=user.bearer).status_code
            )

    threads = [threading.Thread(target=subscribe, args=(u,)) for u in readers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * 6 + [409] * 6
    stats = edge.http.get(f"/v1/workflows/{workflow_id}", headers=owner.bearer).json()["data"]["stats"]
    assert stats["subscribers"] == 6


def test_the_surface_answers_unknown_paths_and_methods_in_its_envelope(edge: Edge) -> None:
    user = edge.user()
    error_of(edge.http.get("/v1/workflows/a/b/c", headers=user.bearer), 404, "NOT_FOUND")
    error_of(edge.http.patch("/v1/workflows", headers=user.bearer), 405, "METHOD_NOT_ALLOWED")
    error_of(edge.http.get("/v1/marketplace/other", headers=user.bearer), 404, "NOT_FOUND")
    body = copy.deepcopy(workflow_body())
    body["manifest"]["steps"] = [{"id": f"s{i}", "name": "S", "instructions": "x"} for i in range(101)]
    error_of(edge.http.post("/v1/workflows", json=body, headers=user.bearer), 400, "VALIDATION_ERROR")
