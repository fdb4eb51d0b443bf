"""Upstream failure, secrets in logs, and the operator CLI, on the running stack."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Edge, Key
from tests.e2e.test_leads import LEADS, assert_error

JUNK_REQUESTS = [
    ("GET", f"{LEADS}?limit=%00", None),
    ("GET", f"{LEADS}/%ZZ", None),
    ("GET", f"{LEADS}/{'a' * 5000}", None),
    ("POST", LEADS, b'{"name": "\\ud800"}'),
    ("POST", LEADS, b'{"name": {"nested": [1, 2, {"deep": null}]}}'),
    ("POST", LEADS, b"\xff\xfe garbage"),
    ("POST", LEADS, b'{"email": "' + b"a" * 100_000 + b'@example.com"}'),
    ("PATCH", f"{LEADS}/00000000-0000-4000-8000-000000000000", b"[]"),
    ("DELETE", f"{LEADS}/", None),
    ("OPTIONS", LEADS, None),
]


@pytest.mark.parametrize(("method", "path", "body"), JUNK_REQUESTS)
def test_no_client_input_causes_a_5xx(
    edge: Edge, key: Key, method: str, path: str, body: bytes | None
) -> None:
    response = edge.http.request(
        method, path, content=body, headers={**key.bearer, "content-type": "application/json"}
    )
    assert response.status_code < 500, response.text
    assert response.headers.get("content-type") == "application/json"
    assert "Traceback" not in response.text


def test_cli_json_output(edge: Edge) -> None:
    def hydractl(*args: str) -> object:
        done = subprocess.run(
            [sys.executable, "-m", "hydractl", *args, "--json"],
            env=edge.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return json.loads(done.stdout)

    tenant = hydractl("tenants", "create", "cli-tenant")
    minted = hydractl(
        "keys", "mint", "--tenant", tenant["id"], "--scopes", "crm:read,crm:write", "--rate-limit", "7"
    )
    assert minted["key"].startswith("hmcp_") and minted["rate_limit_per_minute"] == 7
    response = edge.http.get(LEADS, headers={"Authorization": f"Bearer {minted['key']}"})
    assert response.status_code == 200 and response.headers["x-ratelimit-limit"] == "7"
    listed = hydractl("keys", "list", "--tenant", tenant["id"])
    assert [k["id"] for k in listed] == [minted["id"]] and "key" not in listed[0]
    assert hydractl("keys", "revoke", minted["id"])["revoked_at"]


def test_crm_down_is_503_server_error_and_recovers(edge: Edge, key: Key) -> None:
    edge.stack.stop_process("crm")
    try:
        down = edge.http.post(LEADS, json={"name": "lost?"}, headers=key.bearer)
        assert_error(down, 503, "server_error")
        # /healthz follows Envoy's active health checks (2 s interval, 2 failures).
        deadline = time.monotonic() + 15
        while edge.http.get("/healthz").status_code != 503:
            assert time.monotonic() < deadline, "/healthz never noticed crm was down"
            time.sleep(0.2)
    finally:
        edge.stack.recover_process("crm")
    assert edge.http.get(LEADS, headers=key.bearer).json()["count"] == 0


def test_keys_never_reach_the_logs(edge: Edge, key: Key) -> None:
    edge.http.get(LEADS, headers=key.bearer)
    edge.http.get(LEADS, headers={"Authorization": "Bearer hmcp_wrong_secret_value"})
    logs = "".join(p.read_text(errors="replace") for p in Path(edge.stack.log_dir).glob("*.log"))
    assert logs, "expected process logs"
    assert key.secret not in logs and "hmcp_wrong_secret_value" not in logs
