"""Agent backends: the knowledge agent's answers and handoffs, and a real local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import httpcore
import pytest

from services.common.outbound import HostPolicy
from services.public.agents import (
    AgentDefaults,
    AgentEvent,
    AgentFailed,
    AgentInput,
    AgentLimits,
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


# The test servers listen on loopback, which tenants' URLs may reach only once the operator allows it.
LOCAL_SERVERS = HostPolicy.from_entries(["127.0.0.1"])


def reply(
    settings: AgentSettings,
    request: AgentInput,
    defaults: AgentDefaults | None = None,
    *,
    limits: AgentLimits | None = None,
    hosts: HostPolicy = LOCAL_SERVERS,
) -> list[AgentEvent]:
    async def run() -> list[AgentEvent]:
        agents = Agents(defaults=defaults or AgentDefaults(), limits=limits, hosts=hosts)
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


def test_the_operators_key_goes_only_to_the_operators_own_server() -> None:
    with FakeChatServer() as operators, FakeChatServer() as tenants:
        defaults = AgentDefaults(base_url=operators.base_url, model="m", api_key="sk-operator")
        # The instance leaves its URL null, or names the operator's own server: the key goes along.
        for base_url in (None, operators.base_url + "/"):
            settings = AgentSettings("openai_compatible", base_url=base_url)
            assert text_of(reply(settings, ask("hi"), defaults)) == "Hello!"
        # A tenant's own server never receives it.
        assert text_of(
            reply(AgentSettings("openai_compatible", base_url=tenants.base_url), ask("hi"), defaults)
        )
    assert [r.headers.get("authorization") for r in operators.requests] == ["Bearer sk-operator"] * 2
    (request,) = tenants.requests
    assert "authorization" not in request.headers
    assert not any("sk-operator" in value for value in request.headers.values())


def test_loopback_is_refused_unless_allowed_also_when_a_name_resolves_to_it() -> None:
    with FakeChatServer() as server:
        port = server.base_url.rsplit(":", 1)[1].split("/")[0]
        for base_url in (server.base_url, f"http://localhost:{port}/v1", f"http://2130706433:{port}/v1"):
            settings = AgentSettings("openai_compatible", model="m", base_url=base_url)
            with pytest.raises(AgentFailed) as failed:
                reply(settings, ask("hi"), hosts=HostPolicy())
            assert str(failed.value) == "The agent backend's address is not allowed."
        assert server.requests == []
        # The operator opens the name: it is resolved and used like any other host.
        named = AgentSettings("openai_compatible", model="m", base_url=f"http://localhost:{port}/v1")
        assert text_of(reply(named, ask("hi"), hosts=HostPolicy.from_entries(["localhost"]))) == "Hello!"
    assert len(server.requests) == 1


class RecordingNetwork(httpcore.AsyncNetworkBackend):
    """The real network, recording where each connection goes."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.hosts: list[str] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # type: ignore[no-untyped-def]  # noqa: ASYNC109
        self.hosts.append(host)
        return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    network = RecordingNetwork()
    with FakeChatServer() as server:
        port = server.base_url.rsplit(":", 1)[1].split("/")[0]
        settings = AgentSettings("openai_compatible", model="m", base_url=f"http://localhost:{port}/v1")

        async def run() -> list[AgentEvent]:
            agents = Agents(
                defaults=AgentDefaults(), hosts=HostPolicy.from_entries(["localhost"]), network=network
            )
            try:
                return [e async for e in agents.for_settings(settings).reply(ask("hi"))]
            finally:
                await agents.close()

        assert text_of(asyncio.run(run())) == "Hello!"
    # The name was resolved once, and the socket opened to the address itself: nothing resolves it again.
    assert network.hosts == ["127.0.0.1"]
    (request,) = server.requests
    assert request.headers["host"] == f"localhost:{port}"


def _certificates(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA certificate, and a key and certificate for `name` that it signed (openssl)."""
    ca_key, ca, key, request, cert = (directory / f for f in ("ca.key", "ca.pem", "k.pem", "r.csr", "c.pem"))

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
            "-days", "1", "-subj", "/CN=Test CA")  # fmt: skip
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(request),
        "-subj",
        f"/CN={name}",
    )
    extensions = directory / "ext.cnf"
    extensions.write_text(f"subjectAltName=DNS:{name}\n")
    openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "1", "-extfile", str(extensions))  # fmt: skip
    return ca, key, cert


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
@pytest.mark.parametrize("certified_name", ["localhost", "someone-else.test"])
def test_https_is_pinned_to_the_checked_address_and_verified_for_the_name(
    tmp_path: Path, certified_name: str
) -> None:
    ca, key, cert = _certificates(tmp_path, certified_name)
    served = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    served.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(ca))
    network = RecordingNetwork()
    with FakeChatServer(tls=served) as server:
        port = server.base_url.rsplit(":", 1)[1].split("/")[0]
        settings = AgentSettings("openai_compatible", model="m", base_url=f"https://localhost:{port}/v1")

        async def run() -> list[AgentEvent]:
            agents = Agents(
                defaults=AgentDefaults(),
                hosts=HostPolicy.from_entries(["localhost"]),
                network=network,
                ssl_context=trusting,
            )
            try:
                return [e async for e in agents.for_settings(settings).reply(ask("hi"))]
            finally:
                await agents.close()

        if certified_name == "localhost":
            assert text_of(asyncio.run(run())) == "Hello!"
            assert server.requests[0].headers["host"] == f"localhost:{port}"
        else:  # a certificate for another name is refused, though the address is the right one
            with pytest.raises(AgentFailed, match="unavailable"):
                asyncio.run(run())
            assert server.requests == []
    assert network.hosts == ["127.0.0.1"]
    assert server.server_names == ["localhost"]


def test_redirects_are_not_followed() -> None:
    with FakeChatServer() as target, FakeChatServer(status=307) as server:
        server.headers["Location"] = target.base_url + "/chat/completions"
        with pytest.raises(AgentFailed, match="unavailable"):
            reply(openai_settings(server), ask("hi"))
    assert len(server.requests) == 1 and target.requests == []


def test_a_compressed_reply_is_refused_unread() -> None:
    with FakeChatServer(headers={"Content-Encoding": "gzip"}) as server:
        with pytest.raises(AgentFailed, match="could not be read"):
            reply(openai_settings(server), ask("hi"))
        assert server.requests[0].headers["accept-encoding"] == "identity"


def test_a_reply_is_capped_in_bytes_line_length_and_time() -> None:
    limits = AgentLimits(max_reply_bytes=4096, max_line_bytes=1024, turn_seconds=1)
    # Many small deltas: the reply stops where the stream passes 4 KiB.
    with FakeChatServer(pieces=["word "] * 1000) as server, pytest.raises(AgentFailed, match="too long"):
        reply(openai_settings(server), ask("hi"), limits=limits)
    # One line longer than 1 KiB, ended or not.
    for events in ([content("x" * 2000)], ["data: " + "x" * 2000]):
        with FakeChatServer(events=events) as server, pytest.raises(AgentFailed, match="a line too long"):
            reply(openai_settings(server), ask("hi"), limits=limits)
    # A server that stops sending (each read would wait 30 s): the turn ends after 1 s.
    release = threading.Event()
    with FakeChatServer(pieces=["a", "b"], hold_after_first=release, hold_timeout=30) as server:
        with pytest.raises(AgentFailed, match="took too long"):
            reply(openai_settings(server), ask("hi"), limits=limits)
        assert not release.is_set()
