"""A rolling restart of crm's two replicas behind Envoy, under steady writes, answers no 5xx."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from hydractl.cli import create_tenant, mint
from hydractl.stack import Stack, migrate_all
from testbed.servers import free_port
from testbed.stack import running_stack, stack_env
from tests.support.load import Writes


def healthy_replicas(env: dict[str, str], cluster: str) -> set[str]:
    """The host:port of each replica Envoy currently routes to in `cluster`."""
    url = f"http://127.0.0.1:{env['HYDRA_ENVOY_ADMIN_PORT']}/clusters?format=json"
    with urllib.request.urlopen(url, timeout=2) as response:
        statuses = json.load(response)["cluster_statuses"]
    (found,) = [c for c in statuses if c["name"] == cluster]
    healthy = set()
    for host in found.get("host_statuses", []):
        address = host["address"]["socket_address"]
        if host["health_status"].get("eds_health_status") == "HEALTHY" and not any(
            flag for name, flag in host["health_status"].items() if name.startswith("failed")
        ):
            healthy.add(f"{address['address']}:{address['port_value']}")
    return healthy


def wait_routed(env: dict[str, str], replica: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while replica not in healthy_replicas(env, "crm"):
        assert time.monotonic() < deadline, f"Envoy never routed to {replica} again"
        time.sleep(0.1)


def test_restarting_each_crm_replica_in_turn_under_load_answers_no_5xx(
    tmp_path: Path, postgres_url: str
) -> None:
    first, second = free_port(), free_port()
    env = stack_env(
        tmp_path / "a",
        database_url=postgres_url,
        HYDRA_CRM_PORT=str(first),
        HYDRA_CRM_UPSTREAMS=f"127.0.0.1:{first},127.0.0.1:{second}",
        HYDRA_SHUTDOWN_DELAY_MS="",  # the default: NOT_SERVING until Envoy has seen it
    )
    migrate_all(env)
    other = Stack(
        env={**env, "HYDRA_CRM_PORT": str(second), "HYDRA_CRM_METRICS_PORT": str(free_port())},
        log_dir=tmp_path / "b",
    )
    other.log_dir.mkdir()
    other.start_process("crm")  # the edge reports healthy only once both replicas are
    try:
        with running_stack(env) as stack:
            replicas = {f"127.0.0.1:{first}": stack, f"127.0.0.1:{second}": other}
            for replica in replicas:
                wait_routed(env, replica)
            key = mint(
                env,
                tenant=create_tenant(env, "rolling"),
                scopes=["crm:read", "crm:write"],
                rate_limit=100_000,
            )
            writes = Writes(stack.edge_url, {"Authorization": f"Bearer {key['key']}"})
            with writes.running():
                time.sleep(1)
                for replica, owner in replicas.items():
                    owner.stop_process("crm")  # SIGTERM; returns once it has drained and exited
                    owner.start_process("crm")
                    wait_routed(env, replica)
                    time.sleep(1)
            lost = writes.lost()
    finally:
        other.stop()

    statuses = [status for _, status, _ in writes.answers]
    assert set(statuses) == {201}, {s: statuses.count(s) for s in set(statuses)}
    assert len(statuses) > 100, "too little load to prove anything"
    assert not lost
