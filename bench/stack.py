"""The stack benchmarks run against: every process on a private PostgreSQL and Redis."""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from hydractl.stack import Stack
from tests.support.servers import create_database, postgres_server, redis_server
from tests.support.stack import running_stack, stack_env


@contextlib.contextmanager
def bench_stack(**extra_env: str) -> Iterator[tuple[Stack, dict[str, str]]]:
    """A running stack on fresh PostgreSQL and Redis servers, and its environment; all stopped on exit."""
    with (
        postgres_server() as admin_url,
        redis_server() as redis_url,
        tempfile.TemporaryDirectory(prefix="hydra-bench-") as tmp,
    ):
        env = stack_env(
            Path(tmp),
            database_url=create_database(admin_url, f"bench_{uuid.uuid4().hex[:6]}"),
            redis_url=redis_url,
            **extra_env,
        )
        with running_stack(env) as stack:
            yield stack, env
