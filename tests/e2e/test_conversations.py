"""Conversations of seed 000: filters, order, read-only tags, and the PATCH rules with their side effects."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import Edge, Key, create_resource, open_conversation
from tests.e2e.test_leads import assert_error

CONVERSATIONS = "/api/v1/conversations"
SCOPES = ["conversations:read", "conversations:write", "crm:read", "crm:write"]
TAGS = ("intent", "sentiment", "language", "resolved_at", "handoff_at", "handoff_reason")


@pytest.fixture
def agent(edge: Edge) -> Key:
    return edge.key(scopes=SCOPES)


def get(edge: Edge, key: Key, conversation_id: str) -> dict:
    response = edge.http.get(f"{CONVERSATIONS}/{conversation_id}", headers=key.bearer)
    assert response.status_code == 200, response.text
    return response.json()["conversation"]


def patch(edge: Edge, key: Key, conversation_id: str, body: dict):
    return edge.http.patch(f"{CONVERSATIONS}/{conversation_id}", json=body, headers=key.bearer)


def test_get_shows_read_only_tags_as_null_until_set(edge: Edge, agent: Key) -> None:
    conversation = get(edge, agent, open_conversation(edge, agent.tenant))
    assert conversation["status"] == "open" and conversation["channel"] == "web_chat"
    assert all(conversation[tag] is None for tag in TAGS)
    assert conversation["message_count"] == 0


def test_list_is_most_recently_updated_first_and_filters(edge: Edge, agent: Key) -> None:
    contact = create_resource(edge, agent, "/api/v1/contacts")
    channel = str(uuid.uuid4())
    older = open_conversation(edge, agent.tenant, customer_id=contact["id"])
    newer = open_conversation(edge, agent.tenant, channel_id=channel)
    listed = edge.http.get(CONVERSATIONS, headers=agent.bearer).json()
    assert [c["id"] for c in listed["conversations"]] == [newer, older] and listed["count"] == 2
    open_conversation(edge, agent.tenant)  # noise
    by_customer = edge.http.get(
        CONVERSATIONS, params={"customer_id": contact["id"]}, headers=agent.bearer
    ).json()
    assert [c["id"] for c in by_customer["conversations"]] == [older]
    by_channel = edge.http.get(CONVERSATIONS, params={"channel_id": channel}, headers=agent.bearer).json()
    assert [c["id"] for c in by_channel["conversations"]] == [newer]
    patch(edge, agent, older, {"status": "escalated"})
    escalated = edge.http.get(CONVERSATIONS, params={"status": "escalated"}, headers=agent.bearer).json()
    assert [c["id"] for c in escalated["conversations"]] == [older]
    everything = edge.http.get(CONVERSATIONS, headers=agent.bearer).json()["conversations"]
    assert everything[0]["id"] == older  # updated last
    for bad in (
        {"status": "closed"},
        {"customer_id": "nope"},
        {"channel_id": "1"},
        {"assigned_agent_id": "x"},
    ):
        assert_error(edge.http.get(CONVERSATIONS, params=bad, headers=agent.bearer), 400, "validation_error")


def test_resolving_stamps_sla_summary_and_csat(edge: Edge, agent: Key) -> None:
    conversation_id = open_conversation(
        edge,
        agent.tenant,
        messages=[("visitor", "My invoice is wrong"), ("bot", "Let me check."), ("visitor", "Thanks")],
    )
    response = patch(edge, agent, conversation_id, {"status": "resolved"})
    assert response.status_code == 200
    resolved = response.json()["conversation"]
    assert resolved["status"] == "resolved"
    assert resolved["resolved_at"].endswith("Z") and resolved["csat_requested_at"].endswith("Z")
    assert isinstance(resolved["resolution_seconds"], int | float)
    assert "My invoice is wrong" in resolved["summary"] and resolved["message_count"] == 3
    again = patch(edge, agent, conversation_id, {"status": "resolved"})
    assert again.json()["conversation"]["resolved_at"] == resolved["resolved_at"]
    error = assert_error(
        patch(edge, agent, conversation_id, {"status": "escalated"}), 400, "validation_error"
    )
    assert "reopening" in error["error"]


def test_escalating_records_the_handoff(edge: Edge, agent: Key) -> None:
    escalated = patch(edge, agent, open_conversation(edge, agent.tenant), {"status": "escalated"}).json()
    assert escalated["conversation"]["handoff_at"] and escalated["conversation"]["handoff_reason"]


def test_assigning_once_but_never_re_assigning(edge: Edge, agent: Key) -> None:
    conversation_id = open_conversation(edge, agent.tenant)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assigned = patch(edge, agent, conversation_id, {"assigned_agent_id": first}).json()["conversation"]
    assert (assigned["assigned_agent_id"], assigned["status"]) == (first, "assigned")
    assert patch(edge, agent, conversation_id, {"assigned_agent_id": first}).status_code == 200
    assert_error(patch(edge, agent, conversation_id, {"assigned_agent_id": second}), 400, "validation_error")
    assert_error(patch(edge, agent, conversation_id, {"assigned_agent_id": None}), 400, "validation_error")
    listed = edge.http.get(CONVERSATIONS, params={"assigned_agent_id": first}, headers=agent.bearer).json()
    assert [c["id"] for c in listed["conversations"]] == [conversation_id]


@pytest.mark.parametrize(
    "body",
    [
        {"status": "open"},
        {"status": "assigned"},
        {"status": None},
        {"intent": "billing"},
        {"resolved_at": None},
        {"assigned_agent_id": "not-a-uuid"},
        {"subject": "x"},
    ],
)
def test_only_status_and_assignment_are_writable(edge: Edge, agent: Key, body: dict) -> None:
    conversation_id = open_conversation(edge, agent.tenant)
    before = get(edge, agent, conversation_id)
    assert_error(patch(edge, agent, conversation_id, body), 400, "validation_error")
    assert get(edge, agent, conversation_id) == before


def test_deleting_the_contact_keeps_the_conversation(edge: Edge, agent: Key) -> None:
    contact = create_resource(edge, agent, "/api/v1/contacts")
    conversation_id = open_conversation(
        edge, agent.tenant, customer_id=contact["id"], messages=[("visitor", "hello")]
    )
    assert edge.http.delete(f"/api/v1/contacts/{contact['id']}", headers=agent.bearer).status_code == 204
    conversation = get(edge, agent, conversation_id)
    assert conversation["customer_id"] is None and conversation["message_count"] == 1


def test_write_scope_is_needed_to_patch(edge: Edge) -> None:
    reader = edge.key(scopes=["conversations:read"])
    conversation_id = open_conversation(edge, reader.tenant)
    assert_error(patch(edge, reader, conversation_id, {"status": "resolved"}), 403, "forbidden_scope")
