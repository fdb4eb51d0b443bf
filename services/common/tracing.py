"""Traces: OpenTelemetry spans (W3C trace context) exported by OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is
set, and nothing at all otherwise: no provider, no interceptor, no listener is installed, so a process
without an endpoint runs the code it ran before tracing existed.

A process that traces has a span for every RPC it serves, every gRPC call it makes to a peer, every
statement it sends to its database and every check the gatekeeper answers, each a child of the span
whose `traceparent` arrived with the work. The edge's own trace id is the request's x-request-id.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, Context, attach, detach, set_value
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_client_interceptors, aio_server_interceptor, filters
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import get_meter
from opentelemetry.propagate import extract, set_global_textmap
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from services.common import config

# The OTLP exporter reads these (and OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _CERTIFICATE) itself.
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_INSTRUMENTATION = "hydra"
_HEALTH = "grpc.health.v1.Health"
_REFLECTION = "grpc.reflection."
TRACE_HEADERS = ("traceparent", "tracestate")  # W3C trace context


@dataclass
class _Installed:
    provider: TracerProvider | None = None  # once `start` installed it
    tracer: trace.Tracer = field(default_factory=trace.NoOpTracer)  # our own spans' tracer, made once


_installed = _Installed()


def endpoint(env: Mapping[str, str]) -> str | None:
    """Where spans are exported (OTLP over gRPC), or None: tracing is off."""
    for name in ENDPOINT_VARIABLES:
        if env.get(name):
            return env[name]
    return None


@dataclass(frozen=True)
class Collector:
    """Where an OTLP endpoint URL points: host, port, and the CA file checking its certificate (TLS)."""

    host: str
    port: int
    ca_file: str | None  # None: plain HTTP/2


def collector(env: Mapping[str, str]) -> Collector | None:
    """The OTLP collector spans go to (the port defaults to 4317), or None: tracing is off."""
    url = endpoint(env)
    if url is None:
        return None
    parts = urlsplit(url if "//" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise config.ConfigError(f"OTLP endpoint {url!r}: expected http://host:port or https://host:port")
    ca_file = env.get("OTEL_EXPORTER_OTLP_CERTIFICATE") or config.SYSTEM_CA_FILE
    return Collector(parts.hostname, parts.port or 4317, ca_file if parts.scheme == "https" else None)


# OpenTelemetry's sampler settings, which the SDK reads itself; the edge samples as they say.
_RATIO_SAMPLERS = ("traceidratio", "parentbased_traceidratio")
_OFF_SAMPLERS = ("always_off", "parentbased_always_off")


def sampled_percent(env: Mapping[str, str]) -> float:
    """The share of requests the edge traces, from OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (every
    one by default). The services follow the edge's decision (the SDK's default parent-based sampler)."""
    sampler = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    if sampler in _OFF_SAMPLERS:
        return 0.0
    if sampler not in _RATIO_SAMPLERS:
        return 100.0
    try:
        ratio = float(env.get("OTEL_TRACES_SAMPLER_ARG") or 1.0)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise config.ConfigError("OTEL_TRACES_SAMPLER_ARG: a ratio from 0 to 1")
    return ratio * 100


def enabled() -> bool:
    """Whether this process traces."""
    return _installed.provider is not None


def start(service: str, env: Mapping[str, str]) -> bool:
    """Installs tracing for process `service` (its spans say service.name=hydra-<service>) when an
    endpoint is set; whether it did. Spans still queued are exported when the process exits."""
    if endpoint(env) is None or _installed.provider is not None:
        return enabled()
    # OTEL_RESOURCE_ATTRIBUTES still adds to the resource; the service name is the process's own.
    provider = TracerProvider(resource=Resource.create({"service.name": f"hydra-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint(env))))
    trace.set_tracer_provider(provider)
    set_global_textmap(TraceContextTextMapPropagator())  # traceparent only: no baggage travels
    _installed.provider = provider
    _installed.tracer = provider.get_tracer(_INSTRUMENTATION)
    return True


def server_interceptors() -> list[Any]:
    """The interceptor giving every RPC a server span (the caller's traceparent its parent), if tracing;
    health checks and reflection, which pollers call every few seconds, are not traced."""
    if not enabled():
        return []
    polled = filters.any_of(filters.service_name(_HEALTH), filters.service_prefix(_REFLECTION))
    return [aio_server_interceptor(filter_=filters.negate(polled))]  # type: ignore[no-untyped-call]


def client_interceptors() -> list[Any]:
    """Interceptors giving every call to a peer a client span and sending its traceparent, if tracing."""
    if not enabled():
        return []
    return list(aio_client_interceptors())  # type: ignore[no-untyped-call]


def trace_engine(engine: Any) -> None:
    """Gives every statement a SQLAlchemy engine (its sync_engine) sends a span, if tracing."""
    if not enabled():
        return
    # The instrumentor instruments one engine per process (it is a singleton); its tracer takes any.
    usage = get_meter(_INSTRUMENTATION).create_up_down_counter("db.client.connections.usage")
    EngineTracer(_installed.tracer, engine, usage)  # type: ignore[no-untyped-call]


def trace_connection(connection: Any) -> Any:
    """A psycopg connection whose statements each get a span, if tracing; else the connection as it is."""
    if not enabled():
        return connection
    return PsycopgInstrumentor.instrument_connection(connection)


_NO_SPAN = contextlib.nullcontext()  # what the span helpers give when not tracing: nothing to make


def server_span(name: str, headers: Mapping[str, str]) -> contextlib.AbstractContextManager[Any]:
    """A server span for work that arrived with `headers` (their traceparent its parent), if tracing."""
    if not enabled():
        return _NO_SPAN
    tracer = _installed.tracer
    return tracer.start_as_current_span(name, context=extract(headers), kind=trace.SpanKind.SERVER)


def current_ids() -> dict[str, str]:
    """The trace and span ids of the span under way (hex, as in traceparent), or none."""
    if not enabled():
        return {}
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return {}
    return {"trace_id": format(context.trace_id, "032x"), "span_id": format(context.span_id, "016x")}


def untraced_context() -> contextvars.Context:
    """A context for background work (polling loops, consumers): nothing it does starts a trace."""
    context = contextvars.copy_context()
    if enabled():
        context.run(attach, set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
    return context


def caller_span() -> trace.SpanContext | None:
    """The span under way, for work done later on its behalf (a batch it joins), or None."""
    if not enabled():
        return None
    context = trace.get_current_span().get_span_context()
    return context if context.is_valid else None


@contextlib.contextmanager
def batch_span(name: str, callers: Sequence[trace.SpanContext | None]) -> Iterator[None]:
    """A span for work done at once for several callers (a group commit): the first caller's child,
    linked to the others, so each caller's trace holds the statements that served it."""
    joined = [c for c in callers if c is not None]
    if not joined:
        yield
        return
    # A fresh context: the batch runs in background work's, where nothing is traced.
    parent = trace.set_span_in_context(trace.NonRecordingSpan(joined[0]), Context())
    links = [trace.Link(c) for c in joined[1:]]
    tracer = _installed.tracer
    token = attach(parent)
    try:
        with tracer.start_as_current_span(name, links=links, attributes={"batch.size": len(callers)}):
            yield
    finally:
        detach(token)
