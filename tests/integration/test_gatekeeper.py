"""Two gatekeeper processes sharing PostgreSQL and Redis, driven over Envoy's ext_authz and RLS protocols."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc

from hydractl.cli import create_tenant, mint, revoke_key
from hydractl.stack import Stack
from testbed.servers import free_port
from testbed.stack import grpc_processes, stack_env, wait_serving

SUPPORT_READ = {"surface": "support", "auth": "support_key", "scope": "crm:read"}


@dataclass
class CheckAnswer:
    """The gatekeeper's HTTP answer to one check."""

    status: int
    headers: dict[str, str]
    body: str


def check(env: dict[str, str], secret: str, **headers: str) -> CheckAnswer:
    """One check as Envoy sends it: the route's policy in x-hydra-route-* headers, no body."""
    connection = http.client.HTTPConnection("127.0.0.1", int(env["HYDRA_AUTHZ_PORT"]), timeout=5)
    try:
        sent = {f"x-hydra-route-{k}": v for k, v in SUPPORT_READ.items()}
        sent.update(authorization=f"Bearer {secret}", **{k.replace("_", "-"): v for k, v in headers.items()})
        connection.request("GET", "/api/v1/leads", headers=sent)
        response = connection.getresponse()
        return CheckAnswer(response.status, dict(response.getheaders()), response.read().decode())
    finally:
        connection.close()


@pytest.fixture
def two_gatekeepers(tmp_path: Path, postgres_url: str, redis_url: str) -> Iterator[list[dict[str, str]]]:
    env = stack_env(tmp_path / "a", database_url=postgres_url, redis_url=redis_url)
    second = {
        **env,
        "HYDRA_GATEKEEPER_PORT": str(free_port()),
        "HYDRA_AUTHZ_PORT": str(free_port()),
        "HYDRA_TOOLS_PORT": str(free_port()),
        "HYDRA_GATEKEEPER_METRICS_PORT": str(free_port()),
        "HYDRA_DATA_DIR": str(tmp_path / "b"),
    }
    with grpc_processes(env, "gatekeeper"):
        other = Stack(env=second, log_dir=tmp_path / "b")
        other.log_dir.mkdir(parents=True)
        other.start_process("gatekeeper")
        try:
            wait_serving(f"127.0.0.1:{second['HYDRA_GATEKEEPER_PORT']}")
            yield [env, second]
        finally:
            other.stop()


def test_per_key_limit_holds_across_two_gatekeepers(two_gatekeepers: list[dict[str, str]]) -> None:
    env = two_gatekeepers[0]
    key = mint(env, tenant=create_tenant(env, "shared"), scopes=["crm:read"])
    answers = [check(two_gatekeepers[i % 2], key["key"]) for i in range(61)]
    assert [a.status for a in answers[:60]] == [200] * 60
    refused = answers[60]
    assert refused.status == 429
    assert refused.headers["x-ratelimit-remaining"] == "0" and int(refused.headers["retry-after"]) >= 1
    assert json.loads(refused.body)["code"] == "rate_limited"


def test_concurrent_checks_on_two_gatekeepers_admit_exactly_the_limit(
    two_gatekeepers: list[dict[str, str]],
) -> None:
    env = two_gatekeepers[0]
    key = mint(env, tenant=create_tenant(env, "crowd"), scopes=["crm:read"], rate_limit=25)
    other = mint(env, tenant=create_tenant(env, "bystander"), scopes=["crm:read"], rate_limit=5)
    secrets = [key["key"]] * 40 + [other["key"]] * 8
    with ThreadPoolExecutor(len(secrets)) as pool:
        answers = list(pool.map(lambda i: check(two_gatekeepers[i % 2], secrets[i]), range(len(secrets))))

    def outcome(answers: list[CheckAnswer]) -> tuple[list[int], list[int]]:
        allowed = [a for a in answers if a.status == 200]
        remaining = sorted(int(a.headers["x-ratelimit-remaining"]) for a in allowed)
        return remaining, [a.status for a in answers if a.status != 200]

    # Every admitted request saw its own count; the refused ones got 429.
    assert outcome(answers[:40]) == (list(range(25)), [429] * 15)
    assert outcome(answers[40:]) == (list(range(5)), [429] * 3)


def test_revocation_on_one_gatekeeper_reaches_the_other_within_a_second(
    two_gatekeepers: list[dict[str, str]],
) -> None:
    env, second = two_gatekeepers
    key = mint(env, tenant=create_tenant(env, "revoker"), scopes=["crm:read"])
    assert check(second, key["key"]).status == 200  # now cached on the second
    revoke_key(env, key["id"])
    time.sleep(1.0)
    assert check(second, key["key"]).status == 401


def test_identity_headers_replace_what_the_client_sent(two_gatekeepers: list[dict[str, str]]) -> None:
    env = two_gatekeepers[0]
    key = mint(env, tenant=create_tenant(env, "honest"), scopes=["crm:read"])
    answer = check(env, key["key"], x_hydra_tenant_id="00000000-0000-4000-8000-000000000000")
    assert answer.status == 200
    # Envoy copies these onto the upstream request (replacing the client's) and removes the rest.
    assert answer.headers["x-hydra-tenant-id"] == key["tenant_id"]
    assert answer.headers["x-hydra-key-id"] == key["id"]
    assert answer.headers["x-envoy-auth-headers-to-remove"] == "x-hydra-instance-id,x-hydra-user-id"


def test_redis_down_falls_back_to_in_process_limits(tmp_path: Path) -> None:
    env = stack_env(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with grpc_processes(env, "gatekeeper") as stack:
        key = mint(env, tenant=create_tenant(env, "no-redis"), scopes=["crm:read"], rate_limit=2)
        assert [check(env, key["key"]).status for _ in range(3)] == [200, 200, 429]
        assert "redis unreachable" in stack.log_tail("gatekeeper", 200)


def test_rate_limit_service_limits_per_client_ip(tmp_path: Path, redis_url: str) -> None:
    env = stack_env(tmp_path, redis_url=redis_url)
    with (
        grpc_processes(env, "gatekeeper"),
        grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_GATEKEEPER_PORT']}") as channel,
    ):
        stub = rls_pb2_grpc.RateLimitServiceStub(channel)

        def hit(ip: str) -> rls_pb2.RateLimitResponse:
            request = rls_pb2.RateLimitRequest(domain="hydra")
            descriptor = request.descriptors.add()
            descriptor.entries.add(key="policy", value="forms-test:5")
            descriptor.entries.add(key="remote_address", value=ip)
            return stub.ShouldRateLimit(request)

        codes = [hit("10.9.9.9").overall_code for _ in range(6)]
        assert codes == [rls_pb2.RateLimitResponse.OK] * 5 + [rls_pb2.RateLimitResponse.OVER_LIMIT]
        assert hit("10.9.9.10").overall_code == rls_pb2.RateLimitResponse.OK
        refused = hit("10.9.9.9")
        assert {h.key: h.value for h in refused.response_headers_to_add}["x-ratelimit-remaining"] == "0"


def test_keys_are_stored_only_as_hashes(tmp_path: Path, postgres_url: str) -> None:
    env = stack_env(tmp_path, database_url=postgres_url)
    with grpc_processes(env, "gatekeeper"):
        key = mint(env, tenant=create_tenant(env, "hashed"), scopes=["crm:read"])
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        dump = " ".join(
            str(v) for row in conn.execute(sa.text("SELECT * FROM gatekeeper.api_keys")) for v in row
        )
    engine.dispose()
    assert key["key"] not in dump
    assert hashlib.sha256(key["key"].encode()).hexdigest() in dump


def test_sigterm_drains_and_exits_cleanly(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    with grpc_processes(env, "gatekeeper", "crm") as stack:
        process = stack.processes["crm"]
        stack.stop_process("crm")
        assert process.returncode == 0
        log = stack.log_tail("crm", 50)
        assert '"msg": "draining"' in log and '"msg": "stopped"' in log


def test_a_taken_check_port_stops_the_gatekeeper_at_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = stack_env(tmp_path, HYDRA_AUTHZ_PORT=str(taken.getsockname()[1]))
        started = subprocess.run(
            [sys.executable, "-m", "edge.gatekeeper"], check=False, env=env, capture_output=True, timeout=60
        )
    assert started.returncode == 1
    assert b"cannot listen" in started.stdout + started.stderr
