"""Two gatekeeper processes sharing PostgreSQL and Redis, driven over Envoy's ext_authz protocol."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc
from google.rpc import code_pb2

from hydractl.cli import create_tenant, mint, revoke_key
from hydractl.stack import Stack
from tests.support.servers import free_port
from tests.support.stack import grpc_processes, stack_env, wait_serving

SUPPORT_READ = {"auth": "support_key", "scope": "crm:read"}


def check_request(secret: str, extensions: dict[str, str] = SUPPORT_READ) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    request.attributes.request.http.method = "GET"
    request.attributes.request.http.path = "/api/v1/leads"
    request.attributes.request.http.headers["authorization"] = f"Bearer {secret}"
    request.attributes.context_extensions.update(extensions)
    return request


@pytest.fixture
def two_gatekeepers(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> Iterator[tuple[dict[str, str], list]]:
    env = stack_env(tmp_path / "a", database_url=postgres_url, redis_url=redis_url)
    second = {**env, "HYDRA_GATEKEEPER_PORT": str(free_port()), "HYDRA_DATA_DIR": str(tmp_path / "b")}
    with grpc_processes(env, "gatekeeper"):
        other = Stack(env=second, log_dir=tmp_path / "b")
        other.log_dir.mkdir(parents=True)
        other.start_process("gatekeeper")
        try:
            channels = [
                grpc.insecure_channel(f"127.0.0.1:{e['HYDRA_GATEKEEPER_PORT']}") for e in (env, second)
            ]
            wait_serving(f"127.0.0.1:{second['HYDRA_GATEKEEPER_PORT']}")
            yield env, [external_auth_pb2_grpc.AuthorizationStub(c) for c in channels]
            for channel in channels:
                channel.close()
        finally:
            other.stop()


def test_per_key_limit_holds_across_two_gatekeepers(two_gatekeepers: tuple[dict[str, str], list]) -> None:
    env, stubs = two_gatekeepers
    key = mint(env, tenant=create_tenant(env, "shared"), scopes=["crm:read"])
    answers = [stubs[i % 2].Check(check_request(key["key"])) for i in range(61)]
    assert [a.status.code for a in answers[:60]] == [code_pb2.OK] * 60
    refused = answers[60]
    assert refused.status.code == code_pb2.RESOURCE_EXHAUSTED
    assert refused.denied_response.status.code == 429
    headers = {h.header.key: h.header.value for h in refused.denied_response.headers}
    assert headers["x-ratelimit-remaining"] == "0" and int(headers["retry-after"]) >= 1


def test_concurrent_checks_on_two_gatekeepers_admit_exactly_the_limit(
    two_gatekeepers: tuple[dict[str, str], list],
) -> None:
    env, stubs = two_gatekeepers
    key = mint(env, tenant=create_tenant(env, "crowd"), scopes=["crm:read"], rate_limit=25)
    other = mint(env, tenant=create_tenant(env, "bystander"), scopes=["crm:read"], rate_limit=5)
    # Futures sent together: each gatekeeper decides them in shared batches.
    calls = [stubs[i % 2].Check.future(check_request(key["key"])) for i in range(40)]
    calls += [stubs[i % 2].Check.future(check_request(other["key"])) for i in range(8)]
    answers = [call.result() for call in calls]

    def outcome(answers: list) -> tuple[list[int], list[int]]:
        allowed = [a for a in answers if a.status.code == code_pb2.OK]
        refused = [a for a in answers if a.status.code == code_pb2.RESOURCE_EXHAUSTED]
        assert len(allowed) + len(refused) == len(answers)
        remaining = sorted(
            int(h.header.value)
            for a in allowed
            for h in a.ok_response.response_headers_to_add
            if h.header.key == "x-ratelimit-remaining"
        )
        return remaining, [a.denied_response.status.code for a in refused]

    # Every admitted request saw its own count; the refused ones got 429.
    assert outcome(answers[:40]) == (list(range(25)), [429] * 15)
    assert outcome(answers[40:]) == (list(range(5)), [429] * 3)


def test_revocation_on_one_gatekeeper_reaches_the_other_within_a_second(
    two_gatekeepers: tuple[dict[str, str], list],
) -> None:
    env, stubs = two_gatekeepers
    key = mint(env, tenant=create_tenant(env, "revoker"), scopes=["crm:read"])
    assert stubs[1].Check(check_request(key["key"])).status.code == code_pb2.OK  # now cached on B
    revoke_key(env, key["id"])
    time.sleep(1.0)
    answer = stubs[1].Check(check_request(key["key"]))
    assert answer.denied_response.status.code == 401


def test_identity_headers_overwrite_what_the_client_sent(
    two_gatekeepers: tuple[dict[str, str], list],
) -> None:
    env, stubs = two_gatekeepers
    key = mint(env, tenant=create_tenant(env, "honest"), scopes=["crm:read"])
    request = check_request(key["key"])
    request.attributes.request.http.headers["x-hydra-tenant-id"] = "00000000-0000-4000-8000-000000000000"
    ok = stubs[0].Check(request).ok_response
    set_headers = {h.header.key: (h.header.value, h.append_action) for h in ok.headers}
    assert set_headers["x-hydra-tenant-id"][0] == key["tenant_id"]
    assert set_headers["x-hydra-tenant-id"][1] == 2  # OVERWRITE_IF_EXISTS_OR_ADD
    assert "x-hydra-instance-id" in ok.headers_to_remove


def test_redis_down_falls_back_to_in_process_limits(tmp_path: Path) -> None:
    env = stack_env(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with (
        grpc_processes(env, "gatekeeper") as stack,
        grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_GATEKEEPER_PORT']}") as channel,
    ):
        stub = external_auth_pb2_grpc.AuthorizationStub(channel)
        key = mint(env, tenant=create_tenant(env, "no-redis"), scopes=["crm:read"], rate_limit=2)
        codes = [stub.Check(check_request(key["key"])).status.code for _ in range(3)]
        assert codes == [code_pb2.OK, code_pb2.OK, code_pb2.RESOURCE_EXHAUSTED]
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
        assert b'"detail"' in refused.raw_body


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
