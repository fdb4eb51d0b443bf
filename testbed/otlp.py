"""A local OTLP collector for tests and benchmarks: a real gRPC server taking the spans processes export."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from testbed.servers import free_port

_KEPT_TRACES = 2000  # the oldest are forgotten past this


@dataclass(frozen=True)
class Span:
    """One received span, its ids in hex (as in traceparent)."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    links: tuple[str, ...]  # the span ids it links to


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Listens on 127.0.0.1 from `with` until its end; OTEL_EXPORTER_OTLP_ENDPOINT takes `endpoint`."""

    def __init__(self) -> None:
        self.port = free_port()
        self._traces: OrderedDict[str, list[Span]] = OrderedDict()
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> OtlpReceiver:
        self._server.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.stop(grace=None)

    def Export(self, request: Any, context: Any) -> Any:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self._keep(_span(resource.get("service.name", ""), span))
        return trace_service_pb2.ExportTraceServiceResponse()

    def _keep(self, span: Span) -> None:
        with self._lock:
            self._traces.setdefault(span.trace_id, []).append(span)
            self._traces.move_to_end(span.trace_id)
            while len(self._traces) > _KEPT_TRACES:
                self._traces.popitem(last=False)

    def trace(self, trace_id: str) -> list[Span]:
        """The spans received so far of one trace."""
        with self._lock:
            return list(self._traces.get(trace_id, ()))

    def wait_for(self, trace_id: str, services: set[str], timeout: float = 10.0) -> list[Span]:
        """The trace's spans once every one of `services` sent some (or what came within `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.trace(trace_id)
            if services <= {s.service for s in spans} or time.monotonic() > deadline:
                return spans
            time.sleep(0.05)

    def traces_of(self, service: str) -> list[str]:
        """Ids of the traces holding a span of `service`."""
        with self._lock:
            return [t for t, spans in self._traces.items() if any(s.service == service for s in spans)]


def _span(service: str, span: Any) -> Span:
    return Span(
        service=service,
        name=span.name,
        kind=span.kind,
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_id=span.parent_span_id.hex(),
        attributes={a.key: _value(a.value) for a in span.attributes},
        links=tuple(link.span_id.hex() for link in span.links),
    )


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return (
        getattr(value, kind) if kind in ("string_value", "int_value", "bool_value", "double_value") else None
    )
