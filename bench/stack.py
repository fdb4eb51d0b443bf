"""The stack benchmarks run against: every process on a private PostgreSQL and Redis."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from hydractl.stack import Stack
from testbed.servers import create_database, postgres_server, redis_server
from testbed.stack import running_stack, stack_env


def _data_root() -> str | None:
    """tmpfs when there is one: on ext4, each new file (an email in the maildir) made within minutes of
    the previous run deleting its thousands costs up to 0.7 ms of kernel time (ext4 skips recently freed
    inodes one by one). That measures the harness's clean-up, not the services."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@contextlib.contextmanager
def bench_stack(**extra_env: str) -> Iterator[tuple[Stack, dict[str, str]]]:
    """A running stack on fresh PostgreSQL and Redis servers, and its environment; all stopped on exit."""
    with (
        postgres_server() as admin_url,
        redis_server() as redis_url,
        tempfile.TemporaryDirectory(prefix="hydra-bench-", dir=_data_root()) as tmp,
    ):
        env = stack_env(
            Path(tmp),
            database_url=create_database(admin_url, f"bench_{uuid.uuid4().hex[:6]}"),
            redis_url=redis_url,
            # Like the benchmark's PostgreSQL (fsync=off): the figures are about the software, not the disk.
            # Consumers in delivery processes, as deployed with Redis (compose.yaml).
            **{"HYDRA_MAILDIR_FSYNC": "off", "HYDRA_EVENTS_CONSUMERS": "separate", **extra_env},
        )
        with running_stack(env) as stack:
            yield stack, env


def host_speed() -> float:
    """Milliseconds a fixed single-threaded workload takes here (best of 5).

    Shared machines speed up and slow down; printed beside the figures, it tells runs made at
    different times apart (a higher number means a slower host at that moment).
    """
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        digest = b""
        for i in range(200_000):
            digest = hashlib.blake2b(digest + i.to_bytes(4, "little"), digest_size=16).digest()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def host_speed_line(before: float) -> str:
    """The host speed measured before a run and now, for the end of a report."""
    return f"host speed: {before:.0f} ms before, {host_speed():.0f} ms after (fixed workload; lower = faster)"
