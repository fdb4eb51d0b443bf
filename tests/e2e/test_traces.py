"""Traces: one request is one trace, from Envoy through the gatekeeper, a service, its peer and their
database statements, collected by a local OTLP receiver; its id is the request's x-request-id and is in
every log line written for it."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from testbed.otlp import OtlpReceiver, Span
from testbed.servers import create_database
from testbed.stack import running_stack, stack_env
from tests.e2e.conftest import Edge, Key, create_resource

SERVER, CLIENT = 2, 3  # OTLP span kinds
EDGE, GATEKEEPER, TICKETS, CRM = "hydra-edge", "hydra-gatekeeper", "hydra-tickets", "hydra-crm"
SCOPES = ["tickets:write", "crm:read", "crm:write"]


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def traced(
    receiver: OtlpReceiver, postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Edge]:
    """A stack on PostgreSQL that traces, exporting to the receiver within a fraction of a second."""
    env = stack_env(
        tmp_path_factory.mktemp("traced"),
        database_url=create_database(postgres_admin_url, f"e2e_{uuid.uuid4().hex[:8]}"),
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    with running_stack(env) as stack, httpx.Client(base_url=stack.edge_url, timeout=10) as http:
        yield Edge("traced", stack, env, http)


@pytest.fixture
def key(traced: Edge) -> Key:
    return traced.key(scopes=SCOPES)


def parent_of(span: Span, spans: list[Span]) -> Span:
    parents = [s for s in spans if s.span_id == span.parent_id]
    assert parents, (span, spans)
    return parents[0]


def served(spans: list[Span], service: str, rpc: str) -> Span:
    found = [s for s in spans if s.service == service and s.kind == SERVER and s.name.endswith(rpc)]
    assert len(found) == 1, [(s.service, s.name) for s in spans]
    return found[0]


def statements_under(span: Span, spans: list[Span]) -> list[Span]:
    """Database statement spans below `span`."""
    below = {span.span_id}
    changed = True
    while changed:
        grown = below | {s.span_id for s in spans if s.parent_id in below}
        changed, below = grown != below, grown
    return [s for s in spans if s.span_id in below and "db.system" in s.attributes]


def test_a_request_is_one_trace_from_the_edge_through_the_gatekeeper_a_service_and_its_peer(
    traced: Edge, receiver: OtlpReceiver, key: Key
) -> None:
    contact = create_resource(traced, key, "/api/v1/contacts")
    answer = traced.http.post(
        "/api/v1/tickets",
        json={"title": "Refund", "customer_id": contact["id"]},
        headers=key.bearer,
    )
    assert answer.status_code == 201, answer.text
    trace_id = answer.headers["x-request-id"]
    assert re.fullmatch("[0-9a-f]{32}", trace_id), trace_id  # the trace's own id names the request

    spans = receiver.wait_for(trace_id, {EDGE, GATEKEEPER, TICKETS, CRM})
    assert {s.trace_id for s in spans} == {trace_id}
    root = [s for s in spans if not s.parent_id]
    assert [(s.service, s.kind) for s in root] == [(EDGE, SERVER)], root

    # The edge called the gatekeeper's check, then the service; the service called crm.
    check = [s for s in spans if s.service == GATEKEEPER and s.name == "authz check"]
    assert len(check) == 1 and parent_of(check[0], spans).service == EDGE
    create = served(spans, TICKETS, "CreateTicket")
    assert parent_of(create, spans).service == EDGE
    lookup = served(spans, CRM, "LookupContacts")
    call = parent_of(lookup, spans)
    assert (call.service, call.kind) == (TICKETS, CLIENT)
    assert parent_of(call, spans) == create or create.span_id in _ancestors(call, spans)

    # Each service's statements are in the trace, below the RPC that sent them.
    assert statements_under(create, spans), "no statement of tickets in the trace"
    assert statements_under(lookup, spans), "no statement of crm in the trace"


def _ancestors(span: Span, spans: list[Span]) -> set[str]:
    seen: set[str] = set()
    by_id = {s.span_id: s for s in spans}
    while span.parent_id in by_id and span.parent_id not in seen:
        seen.add(span.parent_id)
        span = by_id[span.parent_id]
    return seen


def test_a_group_committed_write_holds_its_statements(traced: Edge, receiver: OtlpReceiver, key: Key) -> None:
    answer = traced.http.post("/api/v1/leads", json={"name": "Grouped"}, headers=key.bearer)
    assert answer.status_code == 201, answer.text
    trace_id = answer.headers["x-request-id"]
    spans = receiver.wait_for(trace_id, {EDGE, CRM})
    commits = [s for s in spans if s.name == "group commit"]
    assert len(commits) == 1, [(s.service, s.name) for s in spans]
    assert commits[0].span_id in _ancestors(next(iter(statements_under(commits[0], spans))), spans)
    create = served(spans, CRM, "CreateLead")
    assert create.span_id in _ancestors(commits[0], spans)


def test_every_log_line_of_a_request_names_its_trace(traced: Edge, receiver: OtlpReceiver, key: Key) -> None:
    answer = traced.http.get(f"/api/v1/leads/{uuid.uuid4()}", headers=key.bearer)
    assert answer.status_code == 404
    trace_id = answer.headers["x-request-id"]
    assert answer.json()["request_id"] == trace_id
    receiver.wait_for(trace_id, {EDGE, CRM})
    lines = [
        json.loads(line)
        for line in traced.stack.log_tail("crm", 200_000).splitlines()
        if line.startswith("{")
    ]
    mine = [line for line in lines if line.get("request_id") == trace_id]
    assert mine, "no crm log line names the request"
    assert all(line.get("trace_id") == trace_id for line in mine), mine


def test_a_client_can_neither_join_a_trace_nor_name_its_request(
    traced: Edge, receiver: OtlpReceiver, key: Key
) -> None:
    chosen = uuid.uuid4().hex
    answer = traced.http.get(
        "/api/v1/leads",
        headers={**key.bearer, "traceparent": f"00-{chosen}-{'1' * 16}-01", "x-request-id": chosen},
    )
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] != chosen
    receiver.wait_for(answer.headers["x-request-id"], {EDGE, CRM})
    assert receiver.trace(chosen) == []


def test_background_work_starts_no_trace(traced: Edge, receiver: OtlpReceiver, key: Key) -> None:
    """Outbox dispatch, retention, health probes and metrics poll the database all the time: none of it is
    traced, so every trace begins where a request was served (at the edge, or an RPC called directly)."""
    answer = traced.http.post("/api/v1/leads", json={"name": "Announced"}, headers=key.bearer)
    assert answer.status_code == 201
    time.sleep(1.5)  # several polls of the outbox and probes of the database, the lead's event dispatched
    for service in (CRM, GATEKEEPER):
        for trace_id in receiver.traces_of(service):
            spans = receiver.trace(trace_id)
            ids = {s.span_id for s in spans}
            # A span whose parent is not here began the trace, or was called by the edge (whose spans
            # come every few seconds): either way, a request served.
            began = [s for s in spans if s.parent_id not in ids]
            assert all(s.kind == SERVER for s in began), [(s.service, s.name, s.kind) for s in began]
