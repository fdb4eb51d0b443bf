"""Agent backends: the knowledge agent's answers and handoffs, and a real local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator

import pytest

from services.public.agents import (
    AgentDefaults,
    AgentEvent,
    AgentFailed,
    AgentInput,
    Agents,
    AgentSettings,
    Delta,
    Handoff,
    KnowledgeAgent,
    OpenAICompatibleAgent,
    Turn,
)
from services.public.knowledge import KnowledgeEntry
from tests.support.llm_server import FakeChatServer

KNOWLEDGE = (
    KnowledgeEntry("Refund policy", "Refunds are issued within 14 days of purchase to the original card."),
    KnowledgeEntry("Shipping times", "Orders ship within two business days from our Berlin warehouse."),
)


def ask(message: str, history: tuple[Turn, ...] = ()) -> AgentInput:
    return AgentInput(system_prompt="Be brief.", knowledge=KNOWLEDGE, history=history, message=message)


async def collect(events: AsyncIterator[AgentEvent]) -> list[AgentEvent]:
    return [event async for event in events]


def reply_of(settings: AgentSettings, request: AgentInput, **defaults: object) -> list[AgentEvent]:
    async def run() -> list[AgentEvent]:
        agents = Agents(defaults=AgentDefaults(**defaults))  # type: ignore[arg-type]
        try:
            return await collect(agents.for_settings(settings).reply(request))
        finally:
            await agents.close()

    return asyncio.run(run())


def text(events: list[AgentEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


def test_the_knowledge_agent_answers_from_the_best_entry_in_pieces() -> None:
    events = reply_of(AgentSettings("knowledge"), ask("How long until I get my refund?"))
    assert all(isinstance(e, Delta) for e in events) and len(events) > 1
    assert text(events) == KNOWLEDGE[0].content


def test_the_knowledge_agent_hands_off_when_nothing_matches_or_a_person_is_asked_for() -> None:
    for message in ("Can I bring my parrot to the seminar?", "I want to talk to a human, please"):
        events = reply_of(AgentSettings("knowledge"), ask(message))
        assert isinstance(events[-1], Handoff) and events[-1].reason
        assert text(events)  # the visitor is told what happens next


def test_backends_are_chosen_by_settings() -> None:
    agents = Agents(defaults=AgentDefaults())
    try:
        assert isinstance(agents.for_settings(AgentSettings("knowledge")), KnowledgeAgent)
        assert isinstance(agents.for_settings(AgentSettings("openai_compatible")), OpenAICompatibleAgent)
    finally:
        asyncio.run(agents.close())


def test_an_openai_compatible_server_is_streamed_as_it_answers() -> None:
    release = threading.Event()
    settings = AgentSettings("openai_compatible", model="m1", temperature=0.3, max_tokens=64)
    with FakeChatServer(pieces=["Refunds ", "take ", "14 days."], hold_after_first=release) as server:

        async def run() -> tuple[list[AgentEvent], bool]:
            agents = Agents(defaults=AgentDefaults(base_url=server.base_url + "/", api_key="sk-test"))
            try:
                stream = agents.for_settings(settings).reply(
                    ask("How long do refunds take?", (Turn("visitor", "Hi"), Turn("bot", "Hello!")))
                )
                first = await anext(stream)
                held = not release.is_set()  # the first piece arrived while the server held the rest
                release.set()
                return [first, *[e async for e in stream]], held
            finally:
                await agents.close()

        events, held = asyncio.run(run())
    assert held and [e.text for e in events if isinstance(e, Delta)] == ["Refunds ", "take ", "14 days."]
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    body = request.body
    assert (body["model"], body["stream"], body["temperature"], body["max_tokens"]) == ("m1", True, 0.3, 64)
    system, *turns = body["messages"]
    assert system["role"] == "system" and "Be brief." in system["content"]
    assert KNOWLEDGE[0].content in system["content"] and KNOWLEDGE[1].content not in system["content"]
    assert turns == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How long do refunds take?"},
    ]


def test_backend_failures_are_agent_failures() -> None:
    with FakeChatServer(pieces=["x"], status=500) as server, pytest.raises(AgentFailed):
        reply_of(AgentSettings("openai_compatible", model="m", base_url=server.base_url), ask("hi"))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(AgentFailed):
        reply_of(
            AgentSettings("openai_compatible", model="m", base_url=f"http://127.0.0.1:{port}/v1"), ask("hi")
        )
    with pytest.raises(AgentFailed, match="not configured"):
        reply_of(AgentSettings("openai_compatible"), ask("hi"))


def test_a_single_entry_knowledge_base_still_answers_its_topic() -> None:
    # BM25 scores are tiny when every entry holds the term; a match must not depend on their size.
    request = AgentInput(
        system_prompt=None,
        knowledge=(KnowledgeEntry("Refunds", "Refunds are possible within 30 days."),),
        history=(),
        message="Can I get a refund?",
    )
    events = reply_of(AgentSettings("knowledge"), request)
    assert text(events) == "Refunds are possible within 30 days." and not any(
        isinstance(e, Handoff) for e in events
    )
    generic = AgentInput(None, request.knowledge, (), "I need help with a question")
    assert isinstance(reply_of(AgentSettings("knowledge"), generic)[-1], Handoff)
