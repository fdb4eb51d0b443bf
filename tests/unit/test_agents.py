"""Agent backends: the knowledge agent's answers and handoffs, and a real local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Sequence

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
    IndexCache,
    KnowledgeAgent,
    OpenAICompatibleAgent,
    Turn,
    asks_for_human,
)
from services.public.knowledge import KnowledgeEntry
from tests.support.llm_server import FakeChatServer

KNOWLEDGE = (
    KnowledgeEntry("Refund policy", "Refunds are issued within 14 days of purchase to the original card."),
    KnowledgeEntry("Shipping times", "Orders ship within two business days from our Berlin warehouse."),
)
KNOWLEDGE_AGENT = AgentSettings("knowledge")


def ask(
    message: str, history: Sequence[Turn] = (), knowledge: Sequence[KnowledgeEntry] = KNOWLEDGE
) -> AgentInput:
    return AgentInput(system_prompt="Be brief.", knowledge=knowledge, history=history, message=message)


def reply(
    settings: AgentSettings, request: AgentInput, defaults: AgentDefaults | None = None
) -> list[AgentEvent]:
    async def run() -> list[AgentEvent]:
        agents = Agents(defaults=defaults or AgentDefaults())
        try:
            return [event async for event in agents.for_settings(settings).reply(request)]
        finally:
            await agents.close()

    return asyncio.run(run())


def text_of(events: Sequence[AgentEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, Delta))


def openai_settings(server: FakeChatServer, **fields: object) -> AgentSettings:
    return AgentSettings("openai_compatible", model="m", base_url=server.base_url, **fields)  # type: ignore[arg-type]


def test_the_knowledge_agent_answers_from_the_best_entry_in_several_deltas() -> None:
    events = reply(KNOWLEDGE_AGENT, ask("How long until I get my refund?"))
    assert len(events) > 1 and all(isinstance(event, Delta) for event in events)
    assert text_of(events) == KNOWLEDGE[0].content
    assert text_of(reply(KNOWLEDGE_AGENT, ask("And how fast do you ship?"))) == KNOWLEDGE[1].content


def test_a_single_entry_knowledge_base_still_answers() -> None:
    events = reply(KNOWLEDGE_AGENT, ask("refunds?", knowledge=KNOWLEDGE[:1]))
    assert text_of(events) == KNOWLEDGE[0].content and not any(isinstance(e, Handoff) for e in events)


def test_the_knowledge_agent_hands_off_when_nothing_matches() -> None:
    for knowledge in (KNOWLEDGE, ()):
        events = reply(KNOWLEDGE_AGENT, ask("Can I bring my parrot to the seminar?", knowledge=knowledge))
        assert isinstance(events[0], Delta) and "sorry" in events[0].text
        assert events[-1] == Handoff("no knowledge entry matched the question")


def test_the_knowledge_agent_hands_off_when_the_visitor_asks_for_a_human() -> None:
    events = reply(KNOWLEDGE_AGENT, ask("I want to talk to a human"))
    assert isinstance(events[0], Delta) and events[0].text
    assert events[-1] == Handoff("visitor asked for a human")
    # Asking for a person wins even when the message also matches an entry.
    assert reply(KNOWLEDGE_AGENT, ask("Refund? Agent, please!"))[-1] == Handoff("visitor asked for a human")


def test_requests_for_a_person_are_recognised() -> None:
    asked = ("Can I speak with a real person?", "representative", "Let me chat to someone", "AGENT PLEASE")
    for message in asked:
        assert asks_for_human(message), message
    for message in ("How long do refunds take?", "Is your agent network in Berlin?", "human resources"):
        assert not asks_for_human(message), message


def test_backends_are_chosen_by_settings() -> None:
    agents = Agents(defaults=AgentDefaults())
    try:
        assert isinstance(agents.for_settings(KNOWLEDGE_AGENT), KnowledgeAgent)
        assert isinstance(agents.for_settings(AgentSettings("openai_compatible")), OpenAICompatibleAgent)
    finally:
        asyncio.run(agents.close())


def test_an_openai_compatible_server_is_streamed_as_it_answers() -> None:
    release = threading.Event()
    settings = AgentSettings("openai_compatible", model="m1", temperature=0.3, max_tokens=64)
    history = (Turn("visitor", "Hi"), Turn("bot", "Hello!"), Turn("system", "Assigned"), Turn("agent", "Hey"))
    pieces = ["Refunds ", "take ", "14 days."]
    with FakeChatServer(pieces=pieces, hold_after_first=release, hold_timeout=5) as server:
        # The instance's model wins over the default one; a trailing slash on the base URL is tolerated.
        defaults = AgentDefaults(base_url=server.base_url + "/", model="default-model", api_key="sk-test")

        async def run() -> tuple[list[AgentEvent], bool]:
            agents = Agents(defaults=defaults)
            try:
                stream = agents.for_settings(settings).reply(ask("How long do refunds take?", history))
                first = await anext(stream)
                held = not release.is_set()  # the server sends the rest only once this is set
                release.set()
                return [first, *[event async for event in stream]], held
            finally:
                await agents.close()

        events, held = asyncio.run(run())
    # Had the agent waited for the whole reply, the server would have resumed only on its timeout.
    assert held and server.holds_timed_out == 0
    assert events == [Delta("Refunds "), Delta("take "), Delta("14 days.")]
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
        {"role": "assistant", "content": "Hey"},
        {"role": "user", "content": "How long do refunds take?"},
    ]


def test_optional_settings_and_the_key_are_sent_only_when_set() -> None:
    with FakeChatServer(pieces=["ok"]) as server:
        assert text_of(reply(openai_settings(server), ask("hi"))) == "ok"
    (request,) = server.requests
    assert "temperature" not in request.body and "max_tokens" not in request.body
    assert "authorization" not in request.headers


def test_backend_failures_are_agent_failures_safe_to_show() -> None:
    with FakeChatServer(status=500) as server, pytest.raises(AgentFailed) as failed:
        reply(openai_settings(server), ask("hi"))
    assert server.base_url not in str(failed.value) and "127.0.0.1" not in str(failed.value)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(AgentFailed, match="unavailable"):  # nothing listens: connection refused
        nowhere = AgentSettings("openai_compatible", model="m", base_url=f"http://127.0.0.1:{port}/v1")
        reply(nowhere, ask("hi"))


def data(payload: object) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def content(text: str | None) -> str:
    return data({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


def test_only_content_deltas_are_taken_from_the_stream() -> None:
    events = [
        ": keep-alive comment\n\n",
        data({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
        "event: message\nid: 1\n" + content("Hel"),
        "\n\n",
        content(None),
        content(""),
        content("lo"),
        data({"choices": [], "usage": {"total_tokens": 3}}),
        "data: [DONE]\n\n",
        content("after the end"),
    ]
    with FakeChatServer(events=events) as server:
        assert reply(openai_settings(server), ask("hi")) == [Delta("Hel"), Delta("lo")]


def test_broken_streams_are_agent_failures() -> None:
    for events in (
        [content("Hi"), "data: {not json\n\n"],
        [content("Hi"), data({"error": {"message": "model overloaded"}})],
        [content("Hi")],  # cut off before [DONE]
    ):
        with FakeChatServer(events=events) as server, pytest.raises(AgentFailed) as failed:
            reply(openai_settings(server), ask("hi"))
        assert "overloaded" not in str(failed.value)


def test_an_unconfigured_backend_fails_before_any_request() -> None:
    with FakeChatServer() as server:
        for settings in (
            AgentSettings("openai_compatible"),
            AgentSettings("openai_compatible", base_url=server.base_url),
            AgentSettings("openai_compatible", model="m"),
            AgentSettings("openai_compatible", model="m", base_url="http://127.0.0.1:99999/v1"),
            AgentSettings("openai_compatible", model="m", base_url="ftp://example.com/v1"),
        ):
            with pytest.raises(AgentFailed, match="not configured"):
                reply(settings, ask("hi"))
        # The environment's defaults fill what the instance leaves null.
        defaults = AgentDefaults(base_url=server.base_url, model="m")
        assert text_of(reply(AgentSettings("openai_compatible"), ask("hi"), defaults)) == "Hello!"
    assert len(server.requests) == 1


def test_the_index_cache_reuses_indexes_and_stays_bounded() -> None:
    small, other, large = KNOWLEDGE[:1], KNOWLEDGE[1:], (KnowledgeEntry("Long", "word " * 100),)

    async def run() -> None:
        cache = IndexCache(max_indexes=2, max_characters=400)
        first = await cache.get(small)
        assert await cache.get(list(small)) is first  # the same entries, in any sequence
        await cache.get(other)
        await cache.get(small)  # now the most recently used
        await cache.get(KNOWLEDGE)  # a third knowledge base: `other` goes
        assert await cache.get(small) is first
        await cache.get(large)  # over the character budget: all but the newest go
        assert await cache.get(small) is not first

    asyncio.run(run())
