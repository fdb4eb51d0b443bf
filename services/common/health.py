"""A process's health, checked by its own event loop every few seconds: ready while every dependency it
cannot work without answers, alive while the loop still turns (whatever its dependencies do).

Readiness takes a replica out of rotation (Envoy reads it as gRPC health, Kubernetes as /readyz); liveness
restarts a process only when restarting can help: a wedged event loop, never a database that is down.
Both, and each dependency, are gauges too, so an alert needs no probe of its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client
from prometheus_client import Gauge

DEPENDENCY_UP = Gauge(
    "hydra_dependency_up",
    "Whether a dependency answered the process's last check (required: the process is not ready without it).",
    ["dependency", "required"],
)
READY = Gauge("hydra_ready", "Whether the process is ready: every dependency it cannot work without answers.")
LIVE_PATH, READY_PATH = "/livez", "/readyz"


@dataclass(frozen=True)
class Dependency:
    """Something a process checks; only `required` ones decide whether it is ready."""

    name: str
    check: Callable[[], Awaitable[None]]
    required: bool = True


class Health:
    """Checks the dependencies every `interval` seconds (each within twice that); a loop that has not
    finished a round of checks for `stale_after` seconds is no longer alive."""

    def __init__(
        self,
        dependencies: Sequence[Dependency],
        logger: logging.Logger,
        *,
        interval: float = 2.0,
        stale_after: float = 30.0,
    ) -> None:
        self._dependencies = tuple(dependencies)
        self._log = logger
        self.interval = interval
        self._stale_after = stale_after
        self._up: dict[str, bool] = {}
        self._ready: bool | None = None
        self._beat = time.monotonic()

    @classmethod
    def needing_all(cls, dependencies: Iterable[Dependency], logger: logging.Logger, **kw: float) -> Health:
        """Health of a process that cannot work without any of `dependencies` (an event consumer)."""
        return cls([replace(d, required=True) for d in dependencies], logger, **kw)

    async def check_once(self) -> bool:
        """Checks every dependency at once; whether the process is ready."""
        failures = await asyncio.gather(*(self._check(d) for d in self._dependencies))
        answers = [failure is None for failure in failures]
        for dependency, up, failure in zip(self._dependencies, answers, failures, strict=True):
            if self._up.get(dependency.name, True) != up:
                extra = {"dependency": dependency.name, **({"error": failure} if failure else {})}
                self._log.warning("dependency %s", "back" if up else "down", extra=extra)
            self._up[dependency.name] = up
            DEPENDENCY_UP.labels(dependency.name, str(dependency.required).lower()).set(int(up))
        self._ready = all(up for d, up in zip(self._dependencies, answers, strict=True) if d.required)
        READY.set(int(self._ready))
        self._beat = time.monotonic()
        return self._ready

    async def _check(self, dependency: Dependency) -> str | None:
        """None when the dependency answered, else the failure's class (never its message)."""
        try:
            await asyncio.wait_for(dependency.check(), timeout=self.interval * 2)
        except Exception as error:  # any failure to answer is "down"; the transition is logged once, above
            return type(error).__name__
        return None

    async def run(self) -> None:
        """Checks every `interval` seconds, forever."""
        while True:
            await asyncio.sleep(self.interval)
            await self.check_once()

    @property
    def ready(self) -> bool:
        return bool(self._ready)

    @property
    def alive(self) -> bool:
        return time.monotonic() - self._beat < self._stale_after

    def report(self) -> dict[str, Any]:
        """What /readyz answers: readiness and each dependency's state."""
        return {
            "ready": self.ready,
            "dependencies": {
                d.name: {"up": self._up.get(d.name, False), "required": d.required}
                for d in self._dependencies
            },
        }


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, *_: Any) -> None:  # a scrape or a probe every few seconds says nothing new
        pass


def serve_operations(host: str, port: int, health: Health | None) -> Callable[[], None]:
    """Serves /metrics, and with `health` /livez and /readyz, on a thread of its own (a scrape or a probe
    never waits for the event loop, only reads what it last found); returns its stop. Raises OSError when
    the port is taken."""
    metrics = prometheus_client.make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if health is None or path not in (LIVE_PATH, READY_PATH):
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if path == LIVE_PATH:
            ok, body = health.alive, {"alive": health.alive}
        else:
            ok, body = health.ready, health.report()
        status = "200 OK" if ok else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    server_class = _Server6 if ":" in host else _Server
    server = make_server(host, port, app, server_class=server_class, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="operations", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
