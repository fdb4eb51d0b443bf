"""Replicas behind the edge: crm as two processes, one killed under load. Only requests under way on the
killed replica may fail (a read only once its answer had begun: reads cut off before are sent again),
and the supervisor brings it back."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from hydractl.cli import create_tenant, mint
from testbed.servers import create_database
from testbed.stack import running_stack, stack_env
from tests.support.polling import wait_until

WRITERS = 4
READERS = 16


def envoy_stat(admin_port: str, name: str) -> int:
    """One of Envoy's counters."""
    with urllib.request.urlopen(
        f"http://127.0.0.1:{admin_port}/stats?filter=^{name}$", timeout=2
    ) as response:
        (line,) = response.read().decode().splitlines()
    return int(line.rpartition(": ")[2])


def envoy_hosts(admin_port: str, cluster: str) -> dict[str, dict[str, str]]:
    """Envoy's view of each host of `cluster`: its counters and health flags, by address."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/clusters", timeout=2) as response:
        lines = response.read().decode().splitlines()
    hosts: dict[str, dict[str, str]] = {}
    for line in lines:
        parts = line.split("::")
        if len(parts) == 4 and parts[0] == cluster and parts[1][:1].isdigit():  # a host, not a setting
            hosts.setdefault(parts[1], {})[parts[2]] = parts[3]
    return hosts


async def load(
    base: str,
    headers: dict[str, str],
    *,
    lead_id: str,
    seconds: float,
    kill_at: float,
    kill: Callable[[], None],
) -> Counter:
    """Readers and writers for `seconds`; `kill` is called at `kill_at`."""
    outcomes: Counter = Counter()
    deadline = time.monotonic() + seconds

    async def reader(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            answer = await client.get(f"/api/v1/leads/{lead_id}")
            outcomes[("GET", answer.status_code)] += 1

    async def writer(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            answer = await client.post("/api/v1/leads", json={"name": f"load {uuid.uuid4().hex[:6]}"})
            outcomes[("POST", answer.status_code)] += 1

    async def killer() -> None:
        await asyncio.sleep(kill_at)
        await asyncio.to_thread(kill)

    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=15) as client:
        await asyncio.gather(
            *(reader(client) for _ in range(READERS)), *(writer(client) for _ in range(WRITERS)), killer()
        )
    return outcomes


def test_a_replica_killed_under_load_costs_at_most_its_writes_under_way_and_comes_back(
    tmp_path: Path, postgres_admin_url: str, redis_url: str
) -> None:
    env = stack_env(
        tmp_path,
        database_url=create_database(postgres_admin_url, f"replicas_{uuid.uuid4().hex[:8]}"),
        redis_url=redis_url,
        HYDRA_REPLICAS="crm=2,gatekeeper=2",
    )
    with running_stack(env) as stack:
        assert stack.replica_counts()["crm"] == 2 and {"crm-2", "gatekeeper-2"} <= set(stack.processes)
        key = mint(
            env, tenant=create_tenant(env, "replicas"), scopes=["crm:read", "crm:write"], rate_limit=10**6
        )
        headers = {"Authorization": f"Bearer {key['key']}"}
        lead = httpx.post(f"{stack.edge_url}/api/v1/leads", json={"name": "Ada"}, headers=headers).json()[
            "lead"
        ]
        admin = env["HYDRA_ENVOY_ADMIN_PORT"]
        notes: list[str] = []
        stop = threading.Event()
        supervisor = threading.Thread(target=stack.supervise, args=(stop,), kwargs={"note": notes.append})
        supervisor.start()
        try:
            killed = stack.processes["crm-2"].pid
            before: dict[str, dict[str, str]] = {}

            def kill() -> None:
                before.update(envoy_hosts(admin, "crm"))  # what each replica had answered until now
                os.kill(killed, signal.SIGKILL)

            outcomes = asyncio.run(
                load(stack.edge_url, headers, lead_id=lead["id"], seconds=4.0, kill_at=1.5, kill=kill)
            )
            assert len(before) == 2 and all(int(h.get("rq_success", "0")) > 0 for h in before.values()), (
                before
            )
            # Every read cut off on the killed replica was sent again: none waited for a retry slot.
            assert envoy_stat(admin, "cluster.crm.upstream_rq_retry_overflow") == 0
            reads = {status: n for (method, status), n in outcomes.items() if method == "GET"}
            writes = {status: n for (method, status), n in outcomes.items() if method == "POST"}
            # A read of one resource answers its headers (ETag) a moment before its body: one cut off
            # between the two has begun to answer and cannot be sent again. Only those fail.
            failed_reads = sum(n for status, n in reads.items() if status != 200)
            assert reads[200] > 100 and set(reads) <= {200, 503}, outcomes
            assert failed_reads <= READERS // 2, outcomes  # at most the reads under way on the replica
            failed = sum(n for status, n in writes.items() if status != 201)
            assert writes.get(201, 0) > 50 and failed <= WRITERS, outcomes
            assert set(writes) <= {201, 503}, outcomes  # a write cut off says it may have been applied
            wait_until(lambda: any(n.startswith("restarted crm-2") for n in notes), what="crm-2 restarted")
            wait_until(
                lambda: all(h.get("health_flags") == "healthy" for h in envoy_hosts(admin, "crm").values()),
                what="both crm replicas healthy again",
                timeout=30,
            )
            assert stack.processes["crm-2"].pid != killed
            after = httpx.get(f"{stack.edge_url}/api/v1/leads/{lead['id']}", headers=headers)
            assert after.status_code == 200
        finally:
            stop.set()
            supervisor.join()
