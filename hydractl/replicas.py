"""Replicas on one machine: a server run as N processes, each on ports of its own, all behind Envoy (every
replica an endpoint of its clusters) and reached by its peers through one round-robin gRPC channel.

`HYDRA_REPLICAS=crm=2,gatekeeper=2` (or `hydractl up --replicas …`) asks for them. Replica 1 keeps the
configured ports; replica k takes the first free port from each configured port + 100 * (k - 1).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.common import config
from services.common.process import Process

REPLICAS_ENV = "HYDRA_REPLICAS"
_PORT_STEP = 100
MAX_REPLICAS = 16


class ReplicaError(ValueError):
    """Replicas asked for that this stack cannot run."""


def parse(text: str, processes: Mapping[str, Process[Any]]) -> dict[str, int]:
    """`crm=2,gatekeeper=2` as {name: count}; names are the stack's servers, counts 1 to MAX_REPLICAS."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, count = item.partition("=")
        name = name.strip()
        if name not in processes:
            raise ReplicaError(f"no server named {name!r} (servers: {', '.join(processes)})")
        if not count.strip().isdigit() or not 1 <= int(count) <= MAX_REPLICAS:
            raise ReplicaError(f"{name}: a replica count is 1 to {MAX_REPLICAS}, not {count.strip()!r}")
        counts[name] = int(count)
    return counts


def check(env: Mapping[str, str], counts: Mapping[str, int]) -> None:
    """Refuses replicas whose state would not be shared: a SQLite file, or in-process rate limits."""
    for name, count in counts.items():
        if count < 2:
            continue
        if config.database_url(env, name).startswith("sqlite"):
            raise ReplicaError(
                f"{count} replicas of {name} need PostgreSQL (HYDRA_{name.upper()}_DATABASE_URL): "
                "replicas share their database, and SQLite is one file per machine and one writer at a time"
            )
        if name == "gatekeeper" and not env.get("HYDRA_REDIS_URL"):
            raise ReplicaError(
                "replicas of the gatekeeper need HYDRA_REDIS_URL: without Redis each would keep its own "
                "rate-limit windows, and a key would get its limit once per replica"
            )


def sensible(env: Mapping[str, str], cores: int | None = None) -> dict[str, int]:
    """What `make run` starts when not told: one of each on SQLite or below four cores; else two of the
    request-path servers (crm, tickets, and the gatekeeper when Redis shares its windows)."""
    cores = cores or os.cpu_count() or 1
    wanted = {"crm": 2, "tickets": 2, "gatekeeper": 2} if cores >= 4 else {}
    if not env.get("HYDRA_REDIS_URL"):
        wanted.pop("gatekeeper", None)
    return {n: c for n, c in wanted.items() if not config.database_url(env, n).startswith("sqlite")}


def replica_name(server: str, k: int) -> str:
    """crm, crm-2, crm-3, …"""
    return server if k == 1 else f"{server}-{k}"


@dataclass(frozen=True)
class Plan:
    """Each replica's own environment (its ports), and what the whole stack learns about them."""

    replica_env: dict[str, dict[str, str]]  # replica name -> its overrides (HYDRA_<PORT>_PORT)
    shared_env: dict[str, str]  # HYDRA_<PORT>_UPSTREAMS for Envoy, HYDRA_<NAME>_ADDR for peers
    servers: dict[str, str]  # replica name -> its server's name


def plan(env: Mapping[str, str], counts: Mapping[str, int], processes: Mapping[str, Process[Any]]) -> Plan:
    """Ports for every replica beyond the first, and the addresses of all of them."""
    host = config.host(env)
    reach = "127.0.0.1" if host in ("0.0.0.0", "") else host
    replica_env: dict[str, dict[str, str]] = {}
    shared: dict[str, str] = {}
    servers = {name: name for name in processes}
    taken: set[int] = {config.service_port(env, p) for p in (*config.DEFAULT_PORTS, *config.METRICS_PORTS)}
    for name, count in counts.items():
        if count < 2:
            continue
        try:
            ipaddress.IPv4Address(reach)
        except ValueError:
            raise ReplicaError(
                f"replicas on one machine need HYDRA_HOST to be an IPv4 address, not {host!r}"
            ) from None
        ports = [name, *processes[name].http_ports]
        addresses: dict[str, list[str]] = {p: [f"{reach}:{config.service_port(env, p)}"] for p in ports}
        for k in range(2, count + 1):
            replica = replica_name(name, k)
            servers[replica] = name
            own: dict[str, str] = {}
            for port_name in [*ports, *config.metrics_ports(name)]:  # metrics ports: no upstreams
                port = _free_port(host, config.service_port(env, port_name) + _PORT_STEP * (k - 1), taken)
                own[f"HYDRA_{port_name.upper()}_PORT"] = str(port)
                if port_name in addresses:
                    addresses[port_name].append(f"{reach}:{port}")
            replica_env[replica] = own
        for port_name, listed in addresses.items():
            shared.setdefault(f"HYDRA_{port_name.upper()}_UPSTREAMS", ",".join(listed))
        if not env.get(f"HYDRA_{name.upper()}_ADDR"):
            shared[f"HYDRA_{name.upper()}_ADDR"] = "ipv4:" + ",".join(addresses[name])
    return Plan(replica_env, {k: v for k, v in shared.items() if not env.get(k)}, servers)


def _free_port(host: str, start: int, taken: set[int]) -> int:
    """The first port from `start` that nothing listens on and no other replica was given."""
    for port in range(start, min(start + 1000, 65536)):
        if port in taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise ReplicaError(f"no free port from {start} on {host}")
