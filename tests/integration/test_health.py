"""Health you can alert on: readiness follows the dependencies a process cannot work without (a real
PostgreSQL and Redis, up or gone), liveness only its own event loop; both served over HTTP beside the
metrics, and as gauges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import httpx

from services.common.db import Database
from services.common.events.bus import RedisStreamBus
from services.common.health import Dependency, Health, serve_operations
from testbed.servers import free_port

LOG = logging.getLogger("test")


NOWHERE_DATABASE = f"postgresql://hydra:secret@127.0.0.1:{free_port()}/hydra"  # nothing listens there
NOWHERE_REDIS = f"redis://127.0.0.1:{free_port()}/0"


def ping(url: str) -> Callable[[], Awaitable[None]]:
    """A database check, on an engine made and closed in the loop that checks."""

    async def check() -> None:
        database = Database(url, schema="public")
        try:
            await database.ping()
        finally:
            await database.dispose()

    return check


def redis_ping(url: str) -> Callable[[], Awaitable[None]]:
    async def check() -> None:
        bus = RedisStreamBus(url, stream="health", consumer="test", logger=LOG)
        try:
            await bus.ping()
        finally:
            await bus.close()

    return check


@contextlib.contextmanager
def served(health: Health) -> Iterator[int]:
    """Serves `health` on a port of its own; the port."""
    port = free_port()
    stop = serve_operations("127.0.0.1", port, health)
    try:
        yield port
    finally:
        stop()


def get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def checked(dependencies: list[Dependency], *, all_needed: bool = False) -> Health:
    """A Health after one round of checks (in a loop of its own, its connections closed after)."""
    health = (
        Health.needing_all(dependencies, LOG, interval=0.5)
        if all_needed
        else Health(dependencies, LOG, interval=0.5)
    )
    asyncio.run(health.check_once())
    return health


def test_ready_while_the_database_answers_not_when_it_is_gone_and_alive_throughout(postgres_url: str) -> None:
    with served(checked([Dependency("database", ping(postgres_url))])) as port:
        assert get(port, "/readyz").status_code == 200
        assert get(port, "/readyz").json() == {
            "ready": True,
            "dependencies": {"database": {"up": True, "required": True}},
        }

    with served(checked([Dependency("database", ping(NOWHERE_DATABASE))])) as port:
        ready = get(port, "/readyz")
        assert ready.status_code == 503
        assert ready.json()["dependencies"]["database"] == {"up": False, "required": True}
        # The database being down is no reason to restart the process: it still lives.
        assert get(port, "/livez").status_code == 200
        metrics = get(port, "/metrics").text
        assert "hydra_ready 0.0" in metrics
        assert 'hydra_dependency_up{dependency="database",required="true"} 0.0' in metrics


def test_a_server_reports_redis_without_depending_on_it_and_a_consumer_depends_on_it(
    postgres_url: str, redis_url: str
) -> None:
    gone = [Dependency("database", ping(postgres_url)), Dependency("redis", redis_ping(NOWHERE_REDIS), False)]
    with served(checked(gone)) as port:  # a server: writes go on, their events wait in the outbox
        body = get(port, "/readyz").json()
        assert body["ready"] and body["dependencies"]["redis"] == {"up": False, "required": False}
    with served(checked(gone, all_needed=True)) as port:  # a delivery process: its events come from Redis
        assert get(port, "/readyz").status_code == 503
    back = [Dependency("database", ping(postgres_url)), Dependency("redis", redis_ping(redis_url), False)]
    assert checked(back, all_needed=True).ready


def test_liveness_fails_when_the_event_loop_stops_checking() -> None:
    async def answers() -> None:
        return None

    health = Health([Dependency("nothing", answers)], LOG, interval=0.1, stale_after=0.5)
    asyncio.run(health.check_once())
    with served(health) as port:
        assert get(port, "/livez").status_code == 200
        time.sleep(0.6)  # no loop checks any more: as if it were wedged
        assert get(port, "/livez").status_code == 503
        assert get(port, "/readyz").status_code == 200  # what it last found; liveness is what restarts it
