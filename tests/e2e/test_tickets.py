"""Tickets of seed 000: a separate service that checks crm references over gRPC."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.conftest import Edge, Key, create_resource, open_conversation
from tests.e2e.test_leads import assert_error
from tests.support.polling import wait_until

TICKETS = "/api/v1/tickets"
SCOPES = ["tickets:read", "tickets:write", "crm:read", "crm:write", "conversations:read"]


@pytest.fixture
def agent(edge: Edge) -> Key:
    return edge.key(scopes=SCOPES)


def create(edge: Edge, key: Key, **fields: object) -> dict:
    response = edge.http.post(TICKETS, json=fields, headers=key.bearer)
    assert response.status_code == 201, response.text
    return response.json()["ticket"]


def test_create_with_defaults_and_references(edge: Edge, agent: Key) -> None:
    plain = create(edge, agent, title="Printer on fire")
    assert (plain["status"], plain["priority"], plain["customer_id"], plain["resolved_at"]) == (
        "open",
        "normal",
        None,
        None,
    )
    contact = create_resource(edge, agent, "/api/v1/contacts")
    conversation = open_conversation(edge, agent.tenant, customer_id=contact["id"])
    linked = create(
        edge,
        agent,
        title="Refund",
        description="Twice charged",
        priority="urgent",
        customer_id=contact["id"],
        conversation_id=conversation,
        assigned_to=str(uuid.uuid4()),
    )
    assert (linked["customer_id"], linked["conversation_id"], linked["priority"]) == (
        contact["id"],
        conversation,
        "urgent",
    )


def test_concurrent_creates_are_each_checked_stored_and_confirmed(edge: Edge, agent: Key) -> None:
    """Concurrent creates share crm lookups and commits; each still gets its own answer and email."""
    account = create_resource(edge, agent, "/api/v1/accounts")
    mine = edge.http.post(
        "/api/v1/contacts",
        json={"email": f"{uuid.uuid4().hex[:12]}@example.com", "account_id": account["id"]},
        headers=agent.bearer,
    ).json()["contact"]
    theirs = create_resource(edge, edge.key(scopes=SCOPES), "/api/v1/contacts")
    customers = [mine["id"], theirs["id"], str(uuid.uuid4()), None] * 12

    def post(n: int) -> tuple[int, dict]:
        body = {"title": f"T{n}", **({"customer_id": customers[n]} if customers[n] else {})}
        response = edge.http.post(TICKETS, json=body, headers=agent.bearer)
        return response.status_code, response.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(len(customers))))

    expected = [201 if c in (mine["id"], None) else 400 for c in customers]
    assert [status for status, _ in answers] == expected, answers
    created = {body["ticket"]["id"]: body["ticket"] for status, body in answers if status == 201}
    for n, (status, body) in enumerate(answers):
        if status == 201:
            assert (body["ticket"]["title"], body["ticket"]["customer_id"]) == (f"T{n}", customers[n])
    listed = edge.http.get(TICKETS, params={"limit": 100}, headers=agent.bearer).json()["tickets"]
    assert {t["id"]: t for t in listed} == created
    wait_until(lambda: len(edge.mail_to(mine["email"])) == 12, what="one confirmation per ticket")
    assert sorted(m["Subject"] for m in edge.mail_to(mine["email"])) == sorted(
        f"We received your request: T{n}" for n, c in enumerate(customers) if c == mine["id"]
    )


@pytest.mark.parametrize("field", ["customer_id", "conversation_id"])
def test_references_must_be_the_tenants(edge: Edge, agent: Key, field: str) -> None:
    stranger = edge.key(scopes=SCOPES)
    theirs = (
        create_resource(edge, stranger, "/api/v1/contacts")["id"]
        if field == "customer_id"
        else open_conversation(edge, stranger.tenant)
    )
    for value in (theirs, str(uuid.uuid4()), "nope"):
        error = assert_error(
            edge.http.post(TICKETS, json={"title": "T", field: value}, headers=agent.bearer),
            400,
            "validation_error",
        )
        assert field in error["error"]
    assert edge.http.get(TICKETS, headers=agent.bearer).json()["count"] == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "title"),
        ({"title": ""}, None),
        ({"title": "T", "status": "done"}, "status"),
        ({"title": "T", "priority": "asap"}, "priority"),
        ({"title": "T", "assigned_to": "bob"}, "assigned_to"),
        ({"title": "T", "tags": []}, "tags"),
    ],
)
def test_ticket_validation(edge: Edge, agent: Key, body: dict, field: str | None) -> None:
    response = edge.http.post(TICKETS, json=body, headers=agent.bearer)
    if field is None:
        assert response.status_code == 201  # an empty title is a title
        return
    assert field in assert_error(response, 400, "validation_error")["error"]


def test_filters(edge: Edge, agent: Key) -> None:
    contact = create_resource(edge, agent, "/api/v1/contacts")
    agent_id = str(uuid.uuid4())
    urgent = create(edge, agent, title="A", priority="urgent", customer_id=contact["id"])
    assigned = create(edge, agent, title="B", assigned_to=agent_id, status="in_progress")
    create(edge, agent, title="C")

    def ids(**params: str) -> list[str]:
        body = edge.http.get(TICKETS, params=params, headers=agent.bearer).json()
        return [t["id"] for t in body["tickets"]]

    assert ids(priority="urgent") == [urgent["id"]]
    assert ids(customer_id=contact["id"]) == [urgent["id"]]
    assert ids(assigned_to=agent_id) == [assigned["id"]]
    assert ids(status="in_progress") == [assigned["id"]]
    assert len(ids()) == 3
    assert_error(
        edge.http.get(TICKETS, params={"status": "x"}, headers=agent.bearer), 400, "validation_error"
    )


def test_resolving_stamps_and_reopening_clears_the_sla(edge: Edge, agent: Key) -> None:
    ticket = create(edge, agent, title="T")
    url = f"{TICKETS}/{ticket['id']}"
    resolved = edge.http.patch(url, json={"status": "resolved"}, headers=agent.bearer).json()["ticket"]
    assert resolved["resolved_at"].endswith("Z")
    reopened = edge.http.patch(url, json={"status": "open"}, headers=agent.bearer).json()["ticket"]
    assert reopened["resolved_at"] is None
    assert edge.http.delete(url, headers=agent.bearer).status_code == 204
    assert_error(edge.http.get(url, headers=agent.bearer), 404, "not_found")


def test_crm_down_is_503_and_writes_nothing(edge: Edge, agent: Key) -> None:
    contact = create_resource(edge, agent, "/api/v1/contacts")
    edge.stack.stop_process("crm")
    try:
        response = edge.http.post(
            TICKETS, json={"title": "T", "customer_id": contact["id"]}, headers=agent.bearer
        )
        assert_error(response, 503, "server_error")
        assert edge.http.get(TICKETS, headers=agent.bearer).json()["count"] == 0
        assert create(edge, agent, title="no reference needs no crm")["customer_id"] is None
    finally:
        edge.stack.recover_process("crm")
    assert create(edge, agent, title="T", customer_id=contact["id"])["customer_id"] == contact["id"]
