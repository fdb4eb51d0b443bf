"""HydraCore instances and channels (seeds 001, 003): shapes, rules, limits, key context, widget tokens."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

from hydra.gatekeeper.v1 import admin_pb2

from hydractl.cli import CliError, _call, mint
from tests.e2e.conftest import CORE_SCOPES, Edge, core_key, create_channel, create_instance
from tests.e2e.test_core_routes import assert_detail

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
CHANNEL_FIELDS = {
    "channel_type",
    "config",
    "connection_id",
    "created_at",
    "enabled",
    "error_message",
    "external_identifier",
    "id",
    "instance_id",
    "last_event_at",
    "provider",
    "status",
    "updated_at",
}


def test_instance_lifecycle_with_agent_settings(edge: Edge) -> None:
    key = core_key(edge)
    created = create_instance(
        edge,
        key,
        name="Support bot",
        description="Answers billing questions",
        system_prompt="Be brief.",
        model={"backend": "openai_compatible", "model": "llama3", "base_url": "https://llm.example.com/v1"},
        knowledge=[{"title": "Refunds", "content": "Refunds within 30 days."}],
    )
    assert uuid.UUID(created["id"]).version == 4
    assert created["tenant_id"] == key.tenant and created["status"] == "active"
    assert created["model"] == {
        "backend": "openai_compatible",
        "model": "llama3",
        "base_url": "https://llm.example.com/v1",
        "temperature": None,
        "max_tokens": None,
    }
    assert ISO_Z.match(created["created_at"]) and ISO_Z.match(created["updated_at"])
    url = f"/v1/instances/{created['id']}"
    assert edge.http.get(url, headers=key.api_key).json() == created

    patched = edge.http.patch(
        url,
        json={"model": {"temperature": 0.2}, "knowledge": [], "status": "paused", "description": None},
        headers=key.api_key,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["model"]["temperature"] == 0.2 and body["model"]["model"] == "llama3"  # merged
    assert body["knowledge"] == [] and body["status"] == "paused" and body["description"] is None
    assert body["updated_at"] > created["updated_at"]

    assert edge.http.get("/v1/instances?status=paused", headers=key.api_key).json()["count"] == 1
    assert edge.http.get("/v1/instances?status=active", headers=key.api_key).json() == {
        "instances": [],
        "count": 0,
    }
    deleted = edge.http.delete(url, headers=key.api_key)
    assert deleted.status_code == 204 and deleted.content == b""
    assert assert_detail(edge.http.get(url, headers=key.api_key), 404) == "Instance not found"


def test_instance_defaults_and_list_newest_first(edge: Edge) -> None:
    key = core_key(edge)
    first = create_instance(edge, key, name="First")
    second = create_instance(edge, key, name="Second")
    assert first["model"]["backend"] == "knowledge" and first["knowledge"] == []
    assert first["description"] is None and first["system_prompt"] is None
    listed = edge.http.get("/v1/instances", headers=key.api_key).json()
    assert [i["id"] for i in listed["instances"]] == [second["id"], first["id"]] and listed["count"] == 2


def test_validation_errors_are_422_naming_every_offending_field(edge: Edge) -> None:
    key = core_key(edge)
    response = edge.http.post(
        "/v1/instances",
        json={
            "status": "sleeping",
            "model": {"temperature": 3, "base_url": "not a url"},
            "knowledge": [{"title": "no content"}],
            "colour": "blue",
        },
        headers=key.api_key,
    )
    detail = assert_detail(response, 422)
    assert sorted((tuple(d["loc"]), d["type"]) for d in detail) == [
        (("body", "colour"), "extra_forbidden"),
        (("body", "knowledge", 0, "content"), "missing"),
        (("body", "model", "base_url"), "url_parsing"),
        (("body", "model", "temperature"), "less_than_equal"),
        (("body", "name"), "missing"),
        (("body", "status"), "enum"),
    ]
    assert all(isinstance(d["msg"], str) and d["msg"] for d in detail)
    bad_filter = edge.http.get("/v1/instances?status=gone", headers=key.api_key)
    assert assert_detail(bad_filter, 422)[0]["loc"] == ["query", "status"]
    malformed = edge.http.post(
        "/v1/instances", content=b'{"name": ', headers={**key.api_key, "content-type": "application/json"}
    )
    assert malformed.status_code in (400, 422) and "detail" in malformed.json()
    # Nothing half-written.
    assert edge.http.get("/v1/instances", headers=key.api_key).json()["count"] == 0


def test_channels_follow_seed_003(edge: Edge) -> None:
    key = core_key(edge)
    instance = create_instance(edge, key)
    base = f"/v1/instances/{instance['id']}/channels"
    connection = str(uuid.uuid4())
    channel = create_channel(
        edge,
        key,
        instance["id"],
        channel_type="telegram",
        provider="telegram",
        external_identifier="@hydra_bot",
        config={"streaming": True, "rules": ["a"]},
        connection_id=connection,
        credential_id=str(uuid.uuid4()),
        enabled=False,
    )
    assert set(channel) == CHANNEL_FIELDS
    assert channel["config"] == {"streaming": True, "rules": ["a"]} and channel["enabled"] is False
    assert channel["connection_id"] == connection and channel["instance_id"] == instance["id"]
    assert channel["error_message"] is None and channel["last_event_at"] is None
    plain = create_channel(edge, key, instance["id"])
    assert plain["config"] == {} and plain["enabled"] is True and plain["status"] == "active"

    listed = edge.http.get(base, headers=key.api_key).json()
    assert listed == {"channels": [channel, plain], "count": 2}

    patched = edge.http.patch(
        f"{base}/{channel['id']}",
        json={"status": "error", "error_message": "token expired", "enabled": True, "provider": "telegram2"},
        headers=key.api_key,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "error" and patched.json()["error_message"] == "token expired"
    assert patched.json()["channel_type"] == "telegram"

    deleted = edge.http.delete(f"{base}/{plain['id']}", headers=key.api_key)
    assert deleted.status_code == 204
    assert edge.http.get(base, headers=key.api_key).json()["count"] == 1
    missing = edge.http.delete(f"{base}/{plain['id']}", headers=key.api_key)
    assert assert_detail(missing, 404) == "Channel not found"


def test_channel_rules(edge: Edge) -> None:
    key = core_key(edge)
    instance = create_instance(edge, key)
    base = f"/v1/instances/{instance['id']}/channels"
    cases = [
        (
            {"channel_type": "fax", "provider": "p", "external_identifier": "x"},
            ("body", "channel_type"),
            "enum",
        ),
        (
            {"channel_type": "sms", "provider": "p" * 51, "external_identifier": "x"},
            ("body", "provider"),
            "string_too_long",
        ),
        (
            {"channel_type": "sms", "provider": "p", "external_identifier": "x" * 256},
            ("body", "external_identifier"),
            "string_too_long",
        ),
        (
            {"channel_type": "sms", "provider": "p", "external_identifier": "x", "connection_id": "nope"},
            ("body", "connection_id"),
            "uuid_parsing",
        ),
        (
            {"channel_type": "sms", "provider": "p", "external_identifier": "x", "config": []},
            ("body", "config"),
            "dict_type",
        ),
        (
            {"channel_type": "sms", "provider": "p", "external_identifier": "x", "status": "active"},
            ("body", "status"),
            "update_only",
        ),
        ({"provider": "p", "external_identifier": "x"}, ("body", "channel_type"), "missing"),
    ]
    for body, loc, kind in cases:
        detail = assert_detail(edge.http.post(base, json=body, headers=key.api_key), 422)
        assert [(tuple(d["loc"]), d["type"]) for d in detail] == [(loc, kind)], body
    channel = create_channel(edge, key, instance["id"])
    for field, value in [("channel_type", "email"), ("webhook_secret", "x"), ("connection_id", None)]:
        detail = assert_detail(
            edge.http.patch(f"{base}/{channel['id']}", json={field: value}, headers=key.api_key), 422
        )
        assert detail[0]["loc"] == ["body", field] and detail[0]["type"] == "immutable"
    assert edge.http.get(base, headers=key.api_key).json()["count"] == 1
    # A channel is reachable only under its own instance.
    other = create_instance(edge, key)
    wrong = edge.http.patch(
        f"/v1/instances/{other['id']}/channels/{channel['id']}", json={"enabled": False}, headers=key.api_key
    )
    assert assert_detail(wrong, 404) == "Channel not found"


def test_webhook_secret_never_appears_in_a_response_or_a_log(edge: Edge) -> None:
    key = core_key(edge)
    instance = create_instance(edge, key)
    secret = f"whsec-{uuid.uuid4().hex}"
    channel = create_channel(edge, key, instance["id"], webhook_secret=secret)
    base = f"/v1/instances/{instance['id']}/channels"
    answers = [
        json.dumps(channel),
        edge.http.get(base, headers=key.api_key).text,
        edge.http.patch(f"{base}/{channel['id']}", json={"enabled": False}, headers=key.api_key).text,
        edge.http.get(f"/v1/instances/{instance['id']}", headers=key.api_key).text,
    ]
    assert all(secret not in a and "webhook_secret" not in a for a in answers)
    logs = [p for p in (Path(edge.env["HYDRA_DATA_DIR"]) / "logs").rglob("*") if p.is_file()]
    assert any(p.name == "instances.log" for p in logs), logs
    for log in logs:
        assert secret not in log.read_text(errors="replace"), log


def test_deleting_an_instance_deletes_its_channels(edge: Edge) -> None:
    key = core_key(edge)
    instance = create_instance(edge, key)
    create_channel(edge, key, instance["id"])
    assert edge.http.delete(f"/v1/instances/{instance['id']}", headers=key.api_key).status_code == 204
    gone = edge.http.get(f"/v1/instances/{instance['id']}/channels", headers=key.api_key)
    assert assert_detail(gone, 404) == "Instance not found"


def test_bearer_works_like_x_api_key(edge: Edge) -> None:
    key = core_key(edge)
    assert edge.http.get("/v1/instances", headers=key.bearer).status_code == 200


def test_two_keys_of_one_tenant_are_limited_independently(edge: Edge) -> None:
    first = core_key(edge, rate_limit=3)
    second = core_key(edge, first.tenant, rate_limit=3)
    for remaining in (2, 1, 0):
        response = edge.http.get("/v1/instances", headers=first.api_key)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit"] == "3"
        assert response.headers["x-ratelimit-remaining"] == str(remaining)
    refused = edge.http.get("/v1/instances", headers=first.api_key)
    assert isinstance(assert_detail(refused, 429), str)
    assert int(refused.headers["retry-after"]) >= 1 and refused.headers["x-ratelimit-remaining"] == "0"
    assert edge.http.get("/v1/instances", headers=second.api_key).status_code == 200


def hydractl(edge: Edge, *args: str) -> dict:
    """Runs the real CLI against this stack; returns its --json output."""
    done = subprocess.run(
        [sys.executable, "-m", "hydractl", *args, "--json"],
        check=False,
        env=edge.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_limits_are_set_per_key_from_the_cli(edge: Edge) -> None:
    tenant = edge.tenant()
    minted = hydractl(
        edge, "keys", "mint", "--tenant", tenant, "--kind", "hc_live", "--scopes", "instances:read",
        "--rate-limit", "2",
    )  # fmt: skip
    headers = {"X-Api-Key": minted["key"]}
    assert edge.http.get("/v1/instances", headers=headers).headers["x-ratelimit-limit"] == "2"
    changed = hydractl(edge, "keys", "set-limit", minted["id"], "500")
    assert changed["rate_limit_per_minute"] == 500
    deadline = time.monotonic() + 2
    while edge.http.get("/v1/instances", headers=headers).headers["x-ratelimit-limit"] != "500":
        assert time.monotonic() < deadline, "new limit not applied"
        time.sleep(0.1)
    context = edge.http.get("/v1/mcp/api-key-context", headers=headers).json()
    assert context["rate_limit_per_minute"] == 500


def test_api_key_context_describes_the_calling_key(edge: Edge) -> None:
    key = core_key(edge, scopes=["instances:read"], rate_limit=77)
    response = edge.http.get("/v1/mcp/api-key-context", headers=key.api_key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant_id"] == key.tenant and body["key_id"] == key.id
    assert body["scopes"] == ["instances:read"] and body["rate_limit_per_minute"] == 77
    assert set(CORE_SCOPES) | {"crm:read", "tickets:write"} <= set(body["available_scopes"])
    assert key.secret not in response.text and body["prefix"] == key.secret[: len(body["prefix"])]


def keys_of(edge: Edge, tenant: str) -> dict[str, admin_pb2.ApiKey]:
    return {k.id: k for k in _call(edge.env, "ListKeys", admin_pb2.ListKeysRequest(tenant_id=tenant)).keys}


def test_widget_tokens_are_bound_to_an_instance_and_revoked_with_it(edge: Edge) -> None:
    key = core_key(edge)
    instance = create_instance(edge, key)
    token = mint(edge.env, tenant=key.tenant, kind="widget", scopes=[], instance=instance["id"])
    assert token["key"].startswith("hwt_") and token["instance_id"] == instance["id"]
    bystander = create_instance(edge, key)
    kept = mint(edge.env, tenant=key.tenant, kind="widget", scopes=[], instance=bystander["id"])
    # A token for another tenant's instance, or for none, cannot be minted.
    stranger = edge.tenant()
    for tenant, instance_id in [(stranger, instance["id"]), (key.tenant, str(uuid.uuid4()))]:
        try:
            mint(edge.env, tenant=tenant, kind="widget", scopes=[], instance=instance_id)
            raise AssertionError("minted a widget token for an instance the tenant does not have")
        except CliError as error:
            assert "Instance not found" in str(error)
    assert edge.http.delete(f"/v1/instances/{instance['id']}", headers=key.api_key).status_code == 204
    deadline = time.monotonic() + 10
    while not keys_of(edge, key.tenant)[token["id"]].HasField("revoked_at"):
        assert time.monotonic() < deadline, "widget token not revoked"
        time.sleep(0.1)
    assert not keys_of(edge, key.tenant)[kept["id"]].HasField("revoked_at")
