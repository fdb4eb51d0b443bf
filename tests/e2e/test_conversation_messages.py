"""A conversation's transcript over the Support API (cursor-paged, oldest first), an agent's reply
(stored, counted in the conversation, and received by the widget visitor's next poll)."""

from __future__ import annotations

import uuid

from tests.e2e.conftest import Edge, open_conversation
from tests.e2e.test_core_routes import assert_detail
from tests.e2e.test_edge_limits import all_pages
from tests.e2e.test_leads import assert_error
from tests.e2e.test_public_site import visitor
from tests.e2e.test_widget import Widget, chat, conversation, widget

SCOPES = ["conversations:read", "conversations:write"]


def messages_url(conversation_id: str) -> str:
    return f"/api/v1/conversations/{conversation_id}/messages"


def test_a_transcript_pages_oldest_first_and_is_the_tenants_own(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    said = [("visitor", f"message {n}") for n in range(7)]
    conversation_id = open_conversation(edge, key.tenant, messages=said)
    pages = all_pages(edge, messages_url(conversation_id), "messages", key.bearer, limit=3)
    assert [len(page) for page in pages] == [3, 3, 1]
    listed = [m for page in pages for m in page]
    assert [(m["role"], m["content"]) for m in listed] == said
    assert {m["conversation_id"] for m in listed} == {conversation_id}

    other = edge.key(scopes=SCOPES)
    assert_error(edge.http.get(messages_url(conversation_id), headers=other.bearer), 404, "not_found")
    assert_error(edge.http.get(messages_url("not-a-uuid"), headers=key.bearer), 404, "not_found")
    reader = edge.key(key.tenant, scopes=["crm:read"])
    assert_error(edge.http.get(messages_url(conversation_id), headers=reader.bearer), 403, "forbidden_scope")


def test_an_agent_reply_is_stored_counted_and_answered_201(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    conversation_id = open_conversation(edge, key.tenant, messages=[("visitor", "Hi")])
    before = edge.http.get(f"/api/v1/conversations/{conversation_id}", headers=key.bearer).json()[
        "conversation"
    ]
    reply = edge.http.post(
        messages_url(conversation_id), json={"content": "Hello, I can help."}, headers=key.bearer
    )
    assert reply.status_code == 201, reply.text
    message = reply.json()["message"]
    assert message["role"] == "agent" and message["content"] == "Hello, I can help."
    after = edge.http.get(f"/api/v1/conversations/{conversation_id}", headers=key.bearer).json()[
        "conversation"
    ]
    assert after["message_count"] == before["message_count"] + 1
    assert after["last_message_at"] == message["created_at"] and after["updated_at"] >= before["updated_at"]
    listed = edge.http.get(messages_url(conversation_id), headers=key.bearer).json()["messages"]
    assert listed[-1]["id"] == message["id"]

    for bad in (
        {},
        {"content": ""},
        {"content": "x" * 8001},
        {"content": 5},
        {"content": "hi", "role": "bot"},
    ):
        assert_error(
            edge.http.post(messages_url(conversation_id), json=bad, headers=key.bearer),
            400,
            "validation_error",
        )
    other = edge.key(scopes=SCOPES)
    refused = edge.http.post(messages_url(conversation_id), json={"content": "Mine?"}, headers=other.bearer)
    assert_error(refused, 404, "not_found")
    assert len(edge.http.get(messages_url(conversation_id), headers=key.bearer).json()["messages"]) == 2


def poll(edge: Edge, w: Widget, conversation_id: str, cursor: str | None = None) -> dict:
    with visitor(edge) as client:
        response = client.get(
            f"/v1/public/widget/{w.instance['id']}/conversations/{conversation_id}/messages",
            params={"cursor": cursor} if cursor else {},
            headers=w.headers,
        )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_widget_visitor_receives_an_agents_reply_on_the_next_poll(edge: Edge) -> None:
    w = widget(edge)
    events = chat(edge, w, "Can I bring my parrot to the quantum seminar?")  # handed off to a human
    conversation_id = events[0][1]["conversation_id"]
    first = poll(edge, w, conversation_id)
    assert [m["role"] for m in first["messages"]] == ["visitor", "bot"] and first["next_cursor"]
    assert poll(edge, w, conversation_id, first["next_cursor"]) == {
        "messages": [],
        "next_cursor": first["next_cursor"],
    }

    sent = edge.http.post(
        messages_url(conversation_id), json={"content": "Parrots are welcome."}, headers=w.support.bearer
    )
    assert sent.status_code == 201, sent.text
    update = poll(edge, w, conversation_id, first["next_cursor"])
    assert [(m["role"], m["content"]) for m in update["messages"]] == [("agent", "Parrots are welcome.")]
    assert update["messages"][0]["id"] == sent.json()["message"]["id"]
    assert conversation(edge, w, conversation_id)["message_count"] == 3


def test_the_widget_poll_reads_only_its_own_instances_conversations(edge: Edge) -> None:
    w, other = widget(edge), widget(edge)
    conversation_id = chat(edge, w, "How long do refunds take?")[0][1]["conversation_id"]
    with visitor(edge) as client:
        url = f"/v1/public/widget/{other.instance['id']}/conversations/{conversation_id}/messages"
        assert_detail(client.get(url, headers=other.headers), 404)  # another tenant's conversation
        url = f"/v1/public/widget/{w.instance['id']}/conversations/{conversation_id}/messages"
        assert_detail(client.get(url, headers=other.headers), 401)  # a token of another instance
        assert_detail(client.get(url.replace(conversation_id, str(uuid.uuid4())), headers=w.headers), 404)
        assert_detail(client.get(url.replace(conversation_id, "nope"), headers=w.headers), 404)
        forged = client.get(url, params={"cursor": "forged"}, headers=w.headers)
        assert assert_detail(forged, 422)[0]["loc"] == ["query", "cursor"]
        assert client.get(url).status_code == 401
    # A conversation the API opened (no instance) is not any widget's.
    api_conversation = open_conversation(edge, w.core.tenant)
    with visitor(edge) as client:
        url = f"/v1/public/widget/{w.instance['id']}/conversations/{api_conversation}/messages"
        assert_detail(client.get(url, headers=w.headers), 404)
