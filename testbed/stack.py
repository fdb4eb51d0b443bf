"""Starting real Hydra processes for tests and benchmarks, on private ports."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hydractl.stack import Stack, migrate_all
from services.common.config import METRICS_PORTS
from testbed.servers import free_port


def stack_env(
    data_dir: Path, *, database_url: str | None = None, redis_url: str | None = None, **extra: str
) -> dict[str, str]:
    """Environment for one isolated stack: its own ports, data dir, and (optionally) PostgreSQL and Redis."""
    # Nothing of the caller's own Hydra or OpenTelemetry settings leaks in (spans to its collector).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "OTEL_"))}
    env.update(
        HYDRA_DATA_DIR=str(data_dir),
        HYDRA_EDGE_PORT=str(free_port()),
        HYDRA_ENVOY_ADMIN_PORT=str(free_port()),
        HYDRA_GATEKEEPER_PORT=str(free_port()),
        HYDRA_AUTHZ_PORT=str(free_port()),
        HYDRA_CRM_PORT=str(free_port()),
        HYDRA_TICKETS_PORT=str(free_port()),
        HYDRA_INSTANCES_PORT=str(free_port()),
        HYDRA_PUBLIC_PORT=str(free_port()),
        HYDRA_WORKFLOWS_PORT=str(free_port()),
        HYDRA_MCP_PORT=str(free_port()),
        HYDRA_TOOLS_PORT=str(free_port()),
        **{f"HYDRA_{name.upper()}_PORT": str(free_port()) for name in METRICS_PORTS},
        # Stopping waits for no Envoy health check; tests of rolling restarts set "" (the default, 3 s).
        HYDRA_SHUTDOWN_DELAY_MS="0",
    )
    for name in ("crm", "gatekeeper", "tickets", "instances", "public", "workflows"):
        if database_url and database_url.startswith("sqlite"):
            # SQLite has no schemas: one file per service, beside the one given.
            env[f"HYDRA_{name.upper()}_DATABASE_URL"] = database_url.replace(".sqlite3", f".{name}.sqlite3")
        elif database_url:
            env[f"HYDRA_{name.upper()}_DATABASE_URL"] = database_url
    if redis_url:
        env["HYDRA_REDIS_URL"] = redis_url
        env["HYDRA_EVENTS_STREAM_PREFIX"] = f"hydra:test:{uuid.uuid4().hex[:8]}"  # stacks share one Redis
    env.update(extra)
    return env


@contextlib.contextmanager
def running_stack(env: dict[str, str]) -> Iterator[Stack]:
    """A migrated, healthy stack; stopped on exit."""
    migrate_all(env)
    stack = Stack(env=env, log_dir=Path(env["HYDRA_DATA_DIR"]) / "logs")
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def wait_serving(address: str, timeout: float = 30.0) -> None:
    """Blocks until a gRPC server reports SERVING."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # A channel of its own per attempt: a shared connection refused before the server listened
        # would wait out gRPC's reconnect backoff (seconds) before trying again.
        with grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
            try:
                if (
                    health_pb2_grpc.HealthStub(channel)
                    .Check(health_pb2.HealthCheckRequest(), timeout=1)
                    .status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            except grpc.RpcError:
                pass
        time.sleep(0.1)
    raise TimeoutError(f"{address} not serving after {timeout:.0f}s")


@contextlib.contextmanager
def grpc_processes(env: dict[str, str], *names: str) -> Iterator[Stack]:
    """Only the named gRPC processes (no Envoy), migrated and serving."""
    migrate_all(env)
    stack = Stack(env=env, log_dir=Path(env["HYDRA_DATA_DIR"]) / "logs")
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        for name in names:
            stack.start_process(name)
        for name in names:
            wait_serving(f"127.0.0.1:{env[f'HYDRA_{name.upper()}_PORT']}")
        yield stack
    finally:
        stack.stop()
