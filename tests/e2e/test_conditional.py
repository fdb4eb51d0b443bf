"""ETags and conditional requests: GET with If-None-Match is 304 while nothing changed; PATCH and DELETE
with If-Match are refused 412 once someone else changed the resource, on both surfaces."""

from __future__ import annotations

import threading
import uuid

import pytest

from edge.bindings import load_bindings
from tests.e2e.conftest import Edge, Key, core_key, create_channel, create_instance, create_resource
from tests.e2e.test_core_routes import assert_detail
from tests.e2e.test_deployments import create_deployment
from tests.e2e.test_leads import assert_error
from tests.e2e.test_marketplace import create_workflow, error_of, workflow_body

SUPPORT_COLLECTIONS = [
    "/api/v1/leads",
    "/api/v1/accounts",
    "/api/v1/contacts",
    "/api/v1/tickets",
    "/api/v1/conversations",
]
# A field each resource's PATCH takes (conversations: a status change).
CHANGES = {
    "/api/v1/leads": {"name": "Changed"},
    "/api/v1/accounts": {"name": "Changed"},
    "/api/v1/contacts": {"name": "Changed"},
    "/api/v1/tickets": {"title": "Changed"},
    "/api/v1/conversations": {"status": "escalated"},
}


def etag_of(response) -> str:
    """The response's ETag: one strong, quoted entity tag."""
    tag = response.headers["etag"]
    assert tag.startswith('"') and tag.endswith('"') and not tag.startswith("W/"), tag
    return tag


def test_every_conditional_route_is_covered_here() -> None:
    covered = {f"{c}/{{id}}" for c in SUPPORT_COLLECTIONS} | {
        "/api/v1/leads",
        "/api/v1/accounts",
        "/api/v1/contacts",
        "/api/v1/tickets",
        "/v1/instances",
        "/v1/instances/{instance_id}",
        "/v1/instances/{instance_id}/channels",
        "/v1/instances/{instance_id}/channels/{endpoint_id}",
        "/v1/sites",
        "/v1/sites/{site_id}",
        "/v1/workflows/{workflow_id}",
        "/v1/deployments/{deployment_id}",
        "/api/v1/keys/{id}",  # tests/e2e/test_own_keys.py
        "/v1/keys/{id}",
        "/api/v1/webhooks/{id}",  # tests/e2e/test_webhooks.py
        "/v1/webhooks/{id}",
    }
    conditional = {b.template for b in load_bindings() if b.access.conditional}
    assert conditional <= covered, conditional - covered
    assert f"{SUPPORT_COLLECTIONS[0]}/{{id}}" in conditional


@pytest.mark.parametrize("collection", SUPPORT_COLLECTIONS)
def test_a_read_is_304_until_the_resource_changes_and_a_stale_write_is_412(
    edge: Edge, collection: str
) -> None:
    scopes = ["crm:read", "crm:write", "tickets:read", "tickets:write"]
    key = edge.key(scopes=[*scopes, "conversations:read", "conversations:write"])
    row = create_resource(edge, key, collection)
    url = f"{collection}/{row['id']}"
    first = edge.http.get(url, headers=key.bearer)
    assert first.status_code == 200
    tag = etag_of(first)
    assert etag_of(edge.http.get(url, headers=key.bearer)) == tag  # the same version, the same tag

    unchanged = edge.http.get(url, headers={**key.bearer, "If-None-Match": tag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and etag_of(unchanged) == tag
    for other in ('"other"', f'"x", W/{tag}', "*"):  # W/ matches weakly; * matches any version
        answer = edge.http.get(url, headers={**key.bearer, "If-None-Match": other})
        assert answer.status_code == (200 if other == '"other"' else 304), other

    changed = edge.http.patch(url, json=CHANGES[collection], headers={**key.bearer, "If-Match": tag})
    assert changed.status_code == 200, changed.text
    new_tag = etag_of(changed)
    assert new_tag != tag
    assert etag_of(edge.http.get(url, headers=key.bearer)) == new_tag
    assert edge.http.get(url, headers={**key.bearer, "If-None-Match": tag}).status_code == 200

    stale = edge.http.patch(url, json={}, headers={**key.bearer, "If-Match": tag})
    assert_error(stale, 412, "precondition_failed")
    weak = edge.http.patch(url, json={}, headers={**key.bearer, "If-Match": f"W/{new_tag}"})
    assert_error(weak, 412, "precondition_failed")  # a write needs the strong tag
    assert etag_of(edge.http.get(url, headers=key.bearer)) == new_tag  # nothing was written
    if collection != "/api/v1/conversations":  # conversations are not deleted over the API
        assert_error(
            edge.http.delete(url, headers={**key.bearer, "If-Match": tag}), 412, "precondition_failed"
        )
        assert edge.http.get(url, headers=key.bearer).status_code == 200
        assert edge.http.delete(url, headers={**key.bearer, "If-Match": new_tag}).status_code == 204


def test_a_create_answers_with_the_version_a_read_sees(edge: Edge, key: Key) -> None:
    created = edge.http.post("/api/v1/leads", json={"name": "Tagged"}, headers=key.bearer)
    assert created.status_code == 201
    lead = created.json()["lead"]
    assert etag_of(created) == etag_of(edge.http.get(f"/api/v1/leads/{lead['id']}", headers=key.bearer))


def test_two_writers_with_one_version_cannot_both_win(edge: Edge, key: Key) -> None:
    lead = create_resource(edge, key, "/api/v1/leads")
    url = f"/api/v1/leads/{lead['id']}"
    tag = etag_of(edge.http.get(url, headers=key.bearer))
    statuses: list[int] = []
    start = threading.Barrier(8)

    def write(n: int) -> None:
        start.wait()
        answer = edge.http.patch(url, json={"name": f"Writer {n}"}, headers={**key.bearer, "If-Match": tag})
        statuses.append(answer.status_code)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert sorted(statuses) == [200] + [412] * 7, statuses


def test_hydracore_resources_are_conditional_in_fastapis_shape(edge: Edge) -> None:
    key = core_key(edge)
    instance = create_instance(edge, key)
    url = f"/v1/instances/{instance['id']}"
    tag = etag_of(edge.http.get(url, headers=key.api_key))
    assert edge.http.get(url, headers={**key.api_key, "If-None-Match": tag}).status_code == 304
    changed = edge.http.patch(url, json={"description": "New"}, headers={**key.api_key, "If-Match": tag})
    assert changed.status_code == 200 and etag_of(changed) != tag
    stale = edge.http.patch(url, json={"description": "Late"}, headers={**key.api_key, "If-Match": tag})
    assert "changed" in str(assert_detail(stale, 412))
    channel = create_channel(edge, key, instance["id"])
    channel_url = f"{url}/channels/{channel['id']}"
    stale_delete = edge.http.delete(channel_url, headers={**key.api_key, "If-Match": '"stale"'})
    assert_detail(stale_delete, 412)
    assert edge.http.delete(channel_url, headers={**key.api_key, "If-Match": "*"}).status_code == 204


def test_a_missing_resource_is_404_whatever_its_preconditions(edge: Edge, key: Key) -> None:
    url = f"/api/v1/leads/{uuid.uuid4()}"
    assert_error(edge.http.get(url, headers={**key.bearer, "If-None-Match": "*"}), 404, "not_found")
    assert_error(edge.http.patch(url, json={}, headers={**key.bearer, "If-Match": "*"}), 404, "not_found")


def test_if_match_on_a_write_that_keeps_no_versions_is_refused_not_ignored(edge: Edge) -> None:
    key = edge.key(scopes=["conversations:read", "conversations:write"])
    conversation_id = create_resource(edge, key, "/api/v1/conversations")["id"]
    url = f"/api/v1/conversations/{conversation_id}/messages"
    refused = edge.http.post(url, json={"content": "Hi"}, headers={**key.bearer, "If-Match": '"v1"'})
    assert "If-Match" in assert_error(refused, 412, "precondition_failed")["error"]
    assert edge.http.get(url, headers=key.bearer).json()["messages"] == []
    core = core_key(edge)
    answer = edge.http.post(
        "/v1/keys", json={"scopes": ["instances:read"]}, headers={**core.api_key, "If-Match": "*"}
    )
    assert "If-Match" in str(assert_detail(answer, 412))


def test_the_marketplaces_workflows_and_deployments_are_conditional_in_its_envelope(edge: Edge) -> None:
    user = edge.user()
    workflow = create_workflow(edge, user)
    url = f"/v1/workflows/{workflow['workflowId']}"
    tag = etag_of(edge.http.get(url, headers=user.bearer))
    assert edge.http.get(url, headers={**user.bearer, "If-None-Match": tag}).status_code == 304
    replaced = edge.http.put(
        url, json=workflow_body(description="v2"), headers={**user.bearer, "If-Match": tag}
    )
    assert replaced.status_code == 200, replaced.text
    assert etag_of(replaced) != tag
    stale = edge.http.put(url, json=workflow_body(description="v3"), headers={**user.bearer, "If-Match": tag})
    error_of(stale, 412, "PRECONDITION_FAILED")
    error_of(edge.http.delete(url, headers={**user.bearer, "If-Match": tag}), 412, "PRECONDITION_FAILED")

    deployment = create_deployment(edge, user, [workflow["workflowId"]])
    where = f"/v1/deployments/{deployment['deploymentId']}"
    version = etag_of(edge.http.get(where, headers=user.bearer))
    renamed = edge.http.put(where, json={"name": "Renamed"}, headers={**user.bearer, "If-Match": version})
    assert renamed.status_code == 200, renamed.text
    error_of(
        edge.http.delete(where, headers={**user.bearer, "If-Match": version}), 412, "PRECONDITION_FAILED"
    )
    assert edge.http.delete(where, headers={**user.bearer, "If-Match": etag_of(renamed)}).status_code == 200
    assert edge.http.delete(url, headers={**user.bearer, "If-Match": etag_of(replaced)}).status_code == 200
