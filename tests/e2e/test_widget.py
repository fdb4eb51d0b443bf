"""Widget chat (seed 004): SSE through the real edge, the knowledge agent, an OpenAI-compatible backend."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from hydractl.cli import mint
from tests.e2e.conftest import TENANT_MODEL_HOST, Edge, Key, core_key, create_instance
from tests.e2e.test_core_routes import assert_detail
from tests.e2e.test_public_site import visitor
from tests.support.llm_server import FakeChatServer

KNOWLEDGE = [
    {
        "title": "Refund policy",
        "content": "Refunds are issued within 14 days of purchase to the original card.",
    },
    {"title": "Shipping times", "content": "Orders ship within two business days from our Berlin warehouse."},
]


@dataclass
class Widget:
    """An instance with a widget token, and a Support key of the same tenant to read its conversations."""

    instance: dict
    token: str
    core: Key
    support: Key
    token_id: str = ""

    @property
    def path(self) -> str:
        return f"/v1/public/widget/{self.instance['id']}/chat"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Widget-Token": self.token}


def widget(edge: Edge, **instance_fields: object) -> Widget:
    core = core_key(edge)
    instance = create_instance(edge, core, knowledge=KNOWLEDGE, **instance_fields)
    minted = mint(edge.env, tenant=core.tenant, kind="widget", scopes=[], instance=instance["id"])
    support = edge.key(core.tenant, scopes=["conversations:read", "conversations:write"])
    return Widget(instance, minted["key"], core, support, minted["id"])


def parse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict]]:
    """(event, data) pairs of a text/event-stream, yielded as each event completes."""
    name, data = "", []
    for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and name:
            yield name, json.loads("\n".join(data))
            name, data = "", []


def chat(edge: Edge, w: Widget, message: str, **extra: object) -> list[tuple[str, dict]]:
    # Each from an address of its own: chats are limited per client IP, and the tests chat a lot.
    with (
        visitor(edge) as client,
        client.stream("POST", w.path, json={"message": message, **extra}, headers=w.headers) as response,
    ):
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        return list(parse_events(response.iter_lines()))


def conversation(edge: Edge, w: Widget, conversation_id: str) -> dict:
    response = edge.http.get(f"/api/v1/conversations/{conversation_id}", headers=w.support.bearer)
    assert response.status_code == 200, response.text
    return response.json()["conversation"]


def test_the_knowledge_agent_answers_in_a_stream_and_the_conversation_is_in_crm(edge: Edge) -> None:
    w = widget(edge)
    events = chat(edge, w, "How long do refunds take? I was charged twice and I am unhappy.")
    names = [name for name, _ in events]
    assert names[0] == "conversation" and names[-1] == "done"
    assert names.count("delta") >= 2 and set(names[1:-1]) == {"delta"}
    conversation_id = events[0][1]["conversation_id"]
    reply = "".join(data["content"] for name, data in events if name == "delta")
    assert "14 days" in reply
    done = events[-1][1]
    assert done["conversation_id"] == conversation_id and done["handoff"] is False
    uuid.UUID(done["message_id"])
    stored = conversation(edge, w, conversation_id)
    assert stored["channel"] == "web_chat" and stored["instance_id"] == w.instance["id"]
    assert stored["message_count"] == 2 and stored["status"] == "open"
    assert stored["intent"] == "billing" and stored["sentiment"] == "negative" and stored["language"] == "en"
    listed = edge.http.get("/api/v1/conversations", headers=w.support.bearer).json()["conversations"]
    assert [c["id"] for c in listed] == [conversation_id]
    assert listed[0]["intent"] == "billing"
    # Continuing keeps the conversation; a human can then close it through the Support API.
    again = chat(edge, w, "And how fast do you ship?", conversation_id=conversation_id)
    assert again[0] == ("conversation", {"conversation_id": conversation_id})
    assert "two business days" in "".join(d["content"] for n, d in again if n == "delta")
    assert conversation(edge, w, conversation_id)["message_count"] == 4
    closed = edge.http.patch(
        f"/api/v1/conversations/{conversation_id}", json={"status": "resolved"}, headers=w.support.bearer
    )
    assert closed.status_code == 200, closed.text
    assert closed.json()["conversation"]["resolved_at"] is not None


def test_no_matching_knowledge_hands_off_to_a_human(edge: Edge) -> None:
    w = widget(edge)
    events = chat(edge, w, "Can I bring my parrot to the quantum seminar?")
    done = events[-1]
    assert done[0] == "done" and done[1]["handoff"] is True and done[1]["status"] == "escalated"
    stored = conversation(edge, w, events[0][1]["conversation_id"])
    assert stored["status"] == "escalated"
    assert stored["handoff_at"] is not None and stored["handoff_reason"]
    # The bot stays quiet once a human owns the conversation; the visitor's message is still kept.
    later = chat(edge, w, "Hello?", conversation_id=stored["id"])
    assert [n for n, _ in later] == ["conversation", "done"] and later[-1][1]["message_id"] is None
    assert conversation(edge, w, stored["id"])["message_count"] == 3


def test_a_token_works_only_for_its_own_instance(edge: Edge) -> None:
    a, b = widget(edge), widget(edge)
    refused = edge.http.post(b.path, json={"message": "hi"}, headers=a.headers)
    assert isinstance(assert_detail(refused, 401), str)
    assert_detail(edge.http.post(a.path, json={"message": "hi"}), 401)
    assert_detail(edge.http.post(a.path, json={"message": "hi"}, headers={"X-Widget-Token": "hwt_nope"}), 401)
    # A conversation of another instance (even of the same tenant) cannot be continued.
    sibling = create_instance(edge, a.core)
    sibling_token = mint(edge.env, tenant=a.core.tenant, kind="widget", scopes=[], instance=sibling["id"])[
        "key"
    ]
    theirs = chat(edge, Widget(sibling, sibling_token, a.core, a.support), "hello")[0][1]["conversation_id"]
    for conversation_id in (theirs, str(uuid.uuid4())):
        response = edge.http.post(
            a.path, json={"message": "hi", "conversation_id": conversation_id}, headers=a.headers
        )
        assert assert_detail(response, 404) == "Conversation not found"


def test_chat_input_is_validated_before_anything_is_stored(edge: Edge) -> None:
    w = widget(edge)
    for body, expected in [
        ({"message": ""}, [(["body", "message"], "string_too_short")]),
        ({"message": "x" * 8001}, [(["body", "message"], "string_too_long")]),
        ({}, [(["body", "message"], "missing")]),
        ({"message": "hi", "conversation_id": "nope"}, [(["body", "conversation_id"], "uuid_parsing")]),
        ({"message": "hi", "visitor": "x"}, [(["body", "visitor"], "extra_forbidden")]),
    ]:
        detail = assert_detail(edge.http.post(w.path, json=body, headers=w.headers), 422)
        assert [(e["loc"], e["type"]) for e in detail] == expected
    assert edge.http.get("/api/v1/conversations", headers=w.support.bearer).json()["count"] == 0
    assert chat(edge, w, "x" * 8000)[-1][0] == "done"


def test_a_paused_or_deleted_instance_does_not_answer(edge: Edge) -> None:
    w = widget(edge)
    paused = edge.http.patch(
        f"/v1/instances/{w.instance['id']}", json={"status": "paused"}, headers=w.core.api_key
    )
    assert paused.status_code == 200
    assert "paused" in assert_detail(edge.http.post(w.path, json={"message": "hi"}, headers=w.headers), 409)
    assert edge.http.delete(f"/v1/instances/{w.instance['id']}", headers=w.core.api_key).status_code == 204
    deadline = time.monotonic() + 10
    while True:
        response = edge.http.post(w.path, json={"message": "hi"}, headers=w.headers)
        if response.status_code in (401, 404) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert response.status_code in (401, 404), response.text
    assert edge.http.get("/api/v1/conversations", headers=w.support.bearer).json()["count"] == 0


def test_an_openai_compatible_backend_streams_incrementally(edge: Edge) -> None:
    release = threading.Event()
    pieces = ["Refunds ", "take ", "14 days."]
    with FakeChatServer(pieces=pieces, hold_after_first=release, host=TENANT_MODEL_HOST) as server:
        w = widget(
            edge,
            system_prompt="You are the Acme help desk.",
            model={
                "backend": "openai_compatible",
                "model": "acme-7b",
                "base_url": server.base_url,
                "temperature": 0.2,
            },
        )
        seen: list[tuple[str, dict]] = []
        with edge.http.stream(
            "POST", w.path, json={"message": "How long do refunds take?"}, headers=w.headers
        ) as r:
            assert r.status_code == 200
            events = parse_events(r.iter_lines())
            seen.append(next(events))
            seen.append(next(events))
            # Both arrived while the model server is still holding back the rest of its reply.
            assert not release.is_set()
            release.set()
            seen.extend(events)
        assert [n for n, _ in seen[:2]] == ["conversation", "delta"] and seen[1][1] == {"content": "Refunds "}
        assert "".join(d["content"] for n, d in seen if n == "delta") == "Refunds take 14 days."
        assert seen[-1][0] == "done"
        (request,) = server.requests
        body = request.body
        assert body["model"] == "acme-7b" and body["stream"] is True and body["temperature"] == 0.2
        assert body["messages"][0]["role"] == "system"
        assert "Acme help desk" in body["messages"][0]["content"]
        assert "Refunds are issued within 14 days" in body["messages"][0]["content"]
        assert body["messages"][-1] == {"role": "user", "content": "How long do refunds take?"}
        assert "authorization" not in request.headers  # the operator's key is for the operator's server
        stored = conversation(edge, w, seen[0][1]["conversation_id"])
        assert stored["message_count"] == 2


def test_a_failing_backend_ends_the_stream_with_an_error_event_and_hands_off(edge: Edge) -> None:
    with FakeChatServer(pieces=["never"], status=500, host=TENANT_MODEL_HOST) as server:
        w = widget(edge, model={"backend": "openai_compatible", "model": "m", "base_url": server.base_url})
        events = chat(edge, w, "Hello, anyone there?")
    assert [n for n, _ in events] == ["conversation", "error"]
    assert isinstance(events[-1][1]["detail"], str) and server.base_url not in events[-1][1]["detail"]
    stored = conversation(edge, w, events[0][1]["conversation_id"])
    assert stored["status"] == "escalated" and stored["message_count"] == 1


def test_widget_conversations_are_hidden_from_other_tenants(edge: Edge) -> None:
    w = widget(edge)
    conversation_id = chat(edge, w, "How long do refunds take?")[0][1]["conversation_id"]
    stranger = edge.key(scopes=["conversations:read", "conversations:write"])
    assert (
        edge.http.get(f"/api/v1/conversations/{conversation_id}", headers=stranger.bearer).status_code == 404
    )
    patched = edge.http.patch(
        f"/api/v1/conversations/{conversation_id}", json={"status": "resolved"}, headers=stranger.bearer
    )
    assert patched.status_code == 404
    assert (
        edge.http.get(f"/api/v1/conversations/{conversation_id}", headers=w.support.bearer).status_code
        == httpx.codes.OK
    )
