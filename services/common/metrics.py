"""A process's Prometheus metrics, served on its own port: every RPC's calls by status code, their
latency and those in flight (the grpc_server_* names the Go and Java gRPC Prometheus interceptors use),
the process's CPU and memory, and what each part of it adds (event backlog, dead letters, the database
pool, webhook deliveries)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from prometheus_client import Counter, Gauge, Histogram

from services.common import config

# Seconds: from a cached read (about a millisecond) to a model server's answer.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_RPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")

STARTED = Counter("grpc_server_started", "RPCs started on the server.", _RPC_LABELS)
HANDLED = Counter(
    "grpc_server_handled", "RPCs completed on the server, by status code.", (*_RPC_LABELS, "grpc_code")
)
HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "How long the server took to answer RPCs, by RPC.",
    _RPC_LABELS,
    buckets=_LATENCY_BUCKETS,
)
IN_FLIGHT = Gauge("grpc_server_in_flight", "RPCs being handled now.", _RPC_LABELS)

OUTBOX_PENDING = Gauge("hydra_outbox_pending_events", "Events recorded and not yet dispatched.", ["service"])
OUTBOX_AGE = Gauge(
    "hydra_outbox_oldest_pending_seconds",
    "Age of the oldest event not yet dispatched (0: none).",
    ["service"],
)
DEAD_LETTERS = Gauge(
    "hydra_dead_letters",
    "Events a consumer failed on: retrying (due again later) or dead (kept for an operator).",
    ["service", "consumer", "state"],
)
CONSUMER_LAG = Gauge(
    "hydra_event_consumer_lag",
    "Events in a service's stream a consumer has yet to read or acknowledge (Redis only).",
    ["service", "consumer"],
)
DB_POOL_IN_USE = Gauge(
    "hydra_db_pool_connections_in_use", "Database connections checked out now.", ["service"]
)
DB_POOL_SIZE = Gauge("hydra_db_pool_size", "Database connections the pool keeps.", ["service"])
DB_POOL_WAITING = Gauge(
    "hydra_db_pool_waiting", "Tasks waiting for a database connection now (every pool full).", ["service"]
)
RATE_LIMITS = Counter(
    "hydra_rate_limit_decisions",
    "Rate-limit decisions, by outcome and where the window is kept (fallback: in-process, Redis down).",
    ["decision", "store"],
)
KEY_CACHE = Counter(
    "hydra_key_cache_lookups", "Key lookups by secret, answered by the cache or not.", ["result"]
)
WIDGET_STREAMS = Gauge("hydra_widget_streams_open", "Widget chat streams open now.")
MODEL_CALLS = Histogram(
    "hydra_model_call_seconds",
    "Turns with a model server, from the request to the last token, by outcome.",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
WEBHOOK_ATTEMPTS = Histogram(
    "hydra_webhook_attempt_seconds",
    "Webhook delivery attempts, by outcome.",
    ["outcome"],
    buckets=_LATENCY_BUCKETS,
)
REFRESH_SECONDS = 5.0  # how often the gauges read from the database are brought up to date


class RpcMetrics:
    """One RPC's series, looked up once (not per call)."""

    def __init__(self, full_method: str, kind: str) -> None:
        service, _, method = full_method.strip("/").rpartition("/")
        labels = {"grpc_type": kind, "grpc_service": service, "grpc_method": method}
        self._labels = labels
        self._started = STARTED.labels(**labels)
        self._handling = HANDLING.labels(**labels)
        self._in_flight = IN_FLIGHT.labels(**labels)
        self._handled: dict[grpc.StatusCode, Counter] = {}

    def start(self) -> None:
        self._started.inc()
        self._in_flight.inc()

    def end(self, code: grpc.StatusCode, started: float) -> None:
        """Counts a finished call by its status code and observes how long it took."""
        self._in_flight.dec()
        self._handling.observe(time.perf_counter() - started)
        handled = self._handled.get(code)
        if handled is None:
            handled = self._handled[code] = HANDLED.labels(**self._labels, grpc_code=code.name)
        handled.inc()


@dataclass(frozen=True)
class MetricsSettings:
    """Where a process serves its metrics: host and port, or nowhere (HYDRA_METRICS=off)."""

    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def metrics_settings(env: Mapping[str, str], name: str, *, delivery: bool = False) -> MetricsSettings | None:
    """Process `name`'s metrics listener (its delivery process's, with `delivery`): HYDRA_<NAME>_METRICS_PORT
    or HYDRA_<NAME>_DELIVERY_METRICS_PORT on HYDRA_METRICS_HOST (loopback); None with HYDRA_METRICS=off."""
    port_name = f"{name}_delivery_metrics" if delivery else f"{name}_metrics"
    if not config.env_flag(env, "HYDRA_METRICS", True) or port_name not in config.METRICS_PORTS:
        return None
    host = config.env_str(env, "HYDRA_METRICS_HOST", "127.0.0.1")
    return MetricsSettings(host, config.service_port(env, port_name))
