"""Agent backends that stream a reply: from the knowledge entries, or from an OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import ssl
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpcore
import httpx

from services.common.outbound import AddressRefused, HostPolicy, PinnedNetwork, core_url
from services.public.knowledge import WORD, KnowledgeEntry, KnowledgeIndex

OPENAI_COMPATIBLE_BACKEND = "openai_compatible"
# A match's BM25 score divided by the weight of a term found in one entry only: 1.0 is such a term
# once in an entry of average length, and a title word counts more. Raw BM25 scores shrink with the
# number of entries (in a one-entry knowledge base no term is rare), so the threshold is on this ratio.
# 0.5 lets a single distinctive word answer, but not words most entries share.
MIN_RELEVANCE = 0.5
CONTEXT_ENTRIES = 3
MAX_CACHED_INDEXES = 256
# A count alone would not bound memory: 256 knowledge bases of 500 entries of 20,000 characters are 2.5 GB.
MAX_CACHED_CHARACTERS = 50_000_000
WORDS_PER_DELTA = 4
# How a visitor asks for a person, matched as whole words after _normalised() has dropped articles
# and read "speak"/"chat" as "talk" and "with" as "to" (so "Can I speak with a real person?" matches).
HUMAN_REQUEST_PHRASES = (
    "talk to human",
    "talk to person",
    "talk to someone",
    "talk to somebody",
    "talk to agent",
    "talk to representative",
    "talk to manager",
    "connect me to human",
    "connect me to agent",
    "real person",
    "real human",
    "live agent",
    "live person",
    "human agent",
    "human please",
    "agent please",
    "representative",
)
_DROPPED_WORDS = frozenset(["a", "an", "the", "some", "your"])
_SYNONYMS = {"speak": "talk", "chat": "talk", "with": "to"}
HANDOFF_ASKED = "Of course. A member of our team will take over this conversation shortly."
HANDOFF_NO_MATCH = "I'm sorry, I don't have an answer to that. A member of our team will follow up here."
DEFAULT_SYSTEM_PROMPT = "You are a helpful customer-support assistant. Answer briefly and politely."
NOT_CONFIGURED = "The agent is not configured."
UNAVAILABLE = "The agent backend is unavailable."
UNREADABLE = "The agent backend sent a reply that could not be read."
BACKEND_ERROR = "The agent backend could not answer."
REFUSED = "The agent backend's address is not allowed."
TOO_LONG = "The agent's reply was too long."
LINE_TOO_LONG = "The agent backend sent a reply that could not be read (a line too long)."
TOO_SLOW = "The agent took too long to answer."
_CHAT_ROLES = {"visitor": "user", "bot": "assistant", "agent": "assistant"}
_WORD_GROUP = re.compile(rf"\s*(?:\S+\s*){{1,{WORDS_PER_DELTA}}}")
_LINE_END = re.compile(rb"\r\n|\r|\n")
# httpcore's exceptions share no base class; these are every failure of a request or its stream.
_HTTP_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
)


@dataclass(frozen=True)
class AgentSettings:
    """An instance's model settings."""

    backend: str  # "knowledge" | "openai_compatible"
    model: str | None = None
    base_url: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Turn:
    """An earlier message of the conversation; role is visitor, bot, agent or system (crm's roles)."""

    role: str
    content: str


@dataclass(frozen=True)
class AgentInput:
    """What an agent answers: the instance's prompt and knowledge, earlier turns and the visitor's message."""

    system_prompt: str | None
    knowledge: Sequence[KnowledgeEntry]
    history: Sequence[Turn]  # oldest first, without `message`
    message: str


@dataclass(frozen=True)
class Delta:
    """The next piece of the reply."""

    text: str


@dataclass(frozen=True)
class Handoff:
    """Hand the conversation to a human, for this reason (at most 200 characters)."""

    reason: str


AgentEvent = Delta | Handoff


class AgentFailed(Exception):
    """The backend could not reply; the message is safe to show a visitor (no address, no secret)."""


class Agent(Protocol):
    """Produces a reply as a stream of events."""

    def reply(self, request: AgentInput) -> AsyncGenerator[AgentEvent, None]:
        """The reply's events, in order."""
        ...


@dataclass(frozen=True)
class AgentDefaults:
    """Settings from the environment, used where an instance leaves its own null."""

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None  # sent as a Bearer token to base_url only; never logged
    timeout_seconds: float = 30.0  # to connect, and between two reads


@dataclass(frozen=True)
class AgentLimits:
    """Caps on one turn with a model server, and on the connections model servers may hold."""

    turn_seconds: float = 120.0  # from the request to the end of the reply
    max_reply_bytes: int = 2 * 1024 * 1024  # of the event stream as received
    max_line_bytes: int = 64 * 1024
    max_connections: int = 100


class IndexCache:
    """The BM25 indexes of recently used knowledge bases, least recently used evicted first.

    Used from one event loop: get() changes the cache only between awaits.
    """

    def __init__(
        self, *, max_indexes: int = MAX_CACHED_INDEXES, max_characters: int = MAX_CACHED_CHARACTERS
    ) -> None:
        self._max_indexes = max_indexes
        self._max_characters = max_characters
        self._indexes: OrderedDict[tuple[KnowledgeEntry, ...], tuple[KnowledgeIndex, int]] = OrderedDict()
        self._characters = 0

    async def get(self, entries: Sequence[KnowledgeEntry]) -> KnowledgeIndex:
        """The index of `entries`, built on first use."""
        key = tuple(entries)
        cached = self._indexes.get(key)
        if cached is not None:
            self._indexes.move_to_end(key)
            return cached[0]
        # A worker thread builds it: a large knowledge base takes long enough to stall other chats.
        index = await asyncio.to_thread(KnowledgeIndex, key)
        if key not in self._indexes:  # another turn may have built it meanwhile
            size = sum(len(entry.title) + len(entry.content) for entry in key)
            self._indexes[key] = (index, size)
            self._characters += size
            while len(self._indexes) > 1 and (
                len(self._indexes) > self._max_indexes or self._characters > self._max_characters
            ):
                _, (_, evicted_size) = self._indexes.popitem(last=False)
                self._characters -= evicted_size
        return index


def _normalised(message: str) -> str:
    words = (_SYNONYMS.get(word, word) for word in WORD.findall(message.lower()))
    return " ".join(word for word in words if word not in _DROPPED_WORDS)


def asks_for_human(message: str) -> bool:
    """Whether the visitor asks for a person rather than the bot (English phrases)."""
    padded = f" {_normalised(message)} "
    return any(f" {phrase} " in padded for phrase in HUMAN_REQUEST_PHRASES)


def _word_groups(text: str) -> list[str]:
    """`text` in pieces of a few words with their whitespace, so that joined they give `text` back."""
    return _WORD_GROUP.findall(text)


class KnowledgeAgent:
    """Answers with the best-matching entry; hands off when none matches or the visitor asks for a person."""

    def __init__(self, *, indexes: IndexCache | None = None) -> None:
        self._indexes = indexes or IndexCache()

    async def reply(self, request: AgentInput) -> AsyncGenerator[AgentEvent, None]:
        """The best entry's content in word groups, or a short notice and a Handoff."""
        if asks_for_human(request.message):
            yield Delta(HANDOFF_ASKED)
            yield Handoff("visitor asked for a human")
            return
        index = await self._indexes.get(request.knowledge)
        matches = index.search(request.message, limit=1)
        if not matches or matches[0].score / index.rare_term_idf < MIN_RELEVANCE:
            yield Delta(HANDOFF_NO_MATCH)
            yield Handoff("no knowledge entry matched the question")
            return
        for piece in _word_groups(matches[0].entry.content):
            yield Delta(piece)


class OpenAICompatibleAgent:
    """Streams a chat completion from an OpenAI-compatible server, the best-matching entries as context."""

    def __init__(
        self,
        *,
        pool: httpcore.AsyncConnectionPool,
        settings: AgentSettings,
        defaults: AgentDefaults,
        limits: AgentLimits,
        indexes: IndexCache,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._defaults = defaults
        self._limits = limits
        self._indexes = indexes

    async def reply(self, request: AgentInput) -> AsyncGenerator[AgentEvent, None]:
        """Each content delta of the streamed completion, as soon as it arrives, within the turn's caps."""
        deadline = asyncio.get_running_loop().time() + self._limits.turn_seconds
        base_url = self._settings.base_url or self._defaults.base_url
        model = self._settings.model or self._defaults.model
        if not base_url or not model:
            raise AgentFailed(NOT_CONFIGURED)
        url = _chat_completions_url(base_url)
        body: dict[str, Any] = {"model": model, "stream": True, "messages": await self._messages(request)}
        if self._settings.temperature is not None:
            body["temperature"] = self._settings.temperature
        if self._settings.max_tokens is not None:
            body["max_tokens"] = self._settings.max_tokens
        headers = [
            (b"Accept", b"text/event-stream"),
            (b"Accept-Encoding", b"identity"),  # a compressed reply could inflate past every cap
            (b"Content-Type", b"application/json"),
        ]
        if self._defaults.api_key and _is_default_server(self._settings.base_url, self._defaults.base_url):
            headers.append((b"Authorization", f"Bearer {self._defaults.api_key}".encode()))
        timeout = self._defaults.timeout_seconds
        extensions = {"timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}}
        try:
            async with contextlib.AsyncExitStack() as stack:
                async with asyncio.timeout_at(deadline):
                    response = await stack.enter_async_context(
                        self._pool.stream(
                            "POST",
                            url,
                            headers=headers,
                            content=json.dumps(body).encode(),
                            extensions=extensions,
                        )
                    )
                # Redirects are not followed: a 3xx is a failure like any other non-2xx answer.
                if not 200 <= response.status < 300:
                    raise AgentFailed(UNAVAILABLE)
                if _header(response, b"content-encoding") not in (b"", b"identity"):
                    raise AgentFailed(UNREADABLE)
                async for line in _lines(response.aiter_stream(), self._limits, deadline):
                    if not line.startswith(b"data:"):
                        continue  # blank lines, SSE comments and other fields
                    data = line.removeprefix(b"data:").strip()
                    if data == b"[DONE]":
                        return
                    text = _delta_content(data)
                    if text:
                        yield Delta(text)
        except AddressRefused:
            raise AgentFailed(REFUSED) from None
        except TimeoutError:
            raise AgentFailed(TOO_SLOW) from None
        except _HTTP_ERRORS:
            raise AgentFailed(UNAVAILABLE) from None
        # Every OpenAI-compatible server ends with [DONE]; without it the reply was cut off.
        raise AgentFailed(UNAVAILABLE)

    async def _messages(self, request: AgentInput) -> list[dict[str, str]]:
        """The system prompt with the best-matching entries, the earlier turns, then the new message."""
        system = [request.system_prompt or DEFAULT_SYSTEM_PROMPT]
        index = await self._indexes.get(request.knowledge)
        matches = index.search(request.message, limit=CONTEXT_ENTRIES)
        if matches:
            system.append("Answer from this knowledge where it applies:")
            system.extend(f"## {match.entry.title}\n{match.entry.content}" for match in matches)
        messages = [{"role": "system", "content": "\n\n".join(system)}]
        messages.extend(
            {"role": _CHAT_ROLES[turn.role], "content": turn.content}
            for turn in request.history
            if turn.role in _CHAT_ROLES
        )
        messages.append({"role": "user", "content": request.message})
        return messages


def _is_default_server(base_url: str | None, default_base_url: str | None) -> bool:
    """Whether a turn goes to the operator's own server (the only one the operator's key is for)."""
    return base_url is None or (
        default_base_url is not None and base_url.strip().rstrip("/") == default_base_url.strip().rstrip("/")
    )


def _header(response: httpcore.Response, name: bytes) -> bytes:
    values = [v.strip().lower() for k, v in response.headers if k.lower() == name]
    return b",".join(values)


async def _lines(chunks: AsyncIterator[bytes], limits: AgentLimits, deadline: float) -> AsyncIterator[bytes]:
    """The lines of an event stream (CR, LF or CRLF ended), refusing a stream past the turn's caps."""
    buffer = bytearray()
    received = 0
    ended = False
    while not ended:
        # The deadline wraps each read, never a yield: a timeout must not fire in the consumer's code.
        async with asyncio.timeout_at(deadline):
            chunk = await anext(chunks, None)
        if chunk is None:
            ended = True
        else:
            received += len(chunk)
            if received > limits.max_reply_bytes:
                raise AgentFailed(TOO_LONG)
            buffer += chunk
        start = 0
        for match in _LINE_END.finditer(buffer):
            if match.group() == b"\r" and match.end() == len(buffer) and not ended:
                break  # a CR at the end may be the first half of a CRLF
            line = bytes(buffer[start : match.start()])
            start = match.end()
            if len(line) > limits.max_line_bytes:
                raise AgentFailed(LINE_TOO_LONG)
            yield line
        del buffer[:start]
        if len(buffer) > limits.max_line_bytes:
            raise AgentFailed(LINE_TOO_LONG)
    if buffer:
        yield bytes(buffer)


def _chat_completions_url(base_url: str) -> httpcore.URL:
    """Where to post; a URL no request could reach means the agent is not configured."""
    url = core_url(base_url.strip().rstrip("/") + "/chat/completions")
    if url is None:
        raise AgentFailed(NOT_CONFIGURED)
    return url


def _delta_content(data: bytes) -> str:
    """The reply text in one streamed chunk ("" for chunks without any, such as the role or usage)."""
    try:
        chunk = json.loads(data)
    except ValueError:
        raise AgentFailed(UNREADABLE) from None
    if not isinstance(chunk, dict):
        raise AgentFailed(UNREADABLE)
    if chunk.get("error") is not None:
        raise AgentFailed(BACKEND_ERROR)
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    delta = choices[0].get("delta")
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""


class Agents:
    """Picks the backend for an instance's settings; owns the connection pool to model servers."""

    def __init__(
        self,
        *,
        defaults: AgentDefaults,
        limits: AgentLimits | None = None,
        hosts: HostPolicy | None = None,
        network: httpcore.AsyncNetworkBackend | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._defaults = defaults
        self._limits = limits or AgentLimits()
        self._indexes = IndexCache()
        trusted = (hosts or HostPolicy()).with_origin_of(defaults.base_url)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=self._limits.max_connections,
            max_keepalive_connections=min(20, self._limits.max_connections),
            keepalive_expiry=5.0,
            network_backend=PinnedNetwork(trusted, network),
        )
        self._knowledge = KnowledgeAgent(indexes=self._indexes)

    def for_settings(self, settings: AgentSettings) -> Agent:
        """The OpenAI-compatible backend when asked for, else the knowledge agent (which needs nothing)."""
        if settings.backend == OPENAI_COMPATIBLE_BACKEND:
            return OpenAICompatibleAgent(
                pool=self._pool,
                settings=settings,
                defaults=self._defaults,
                limits=self._limits,
                indexes=self._indexes,
            )
        return self._knowledge

    async def close(self) -> None:
        """Closes the connections to model servers."""
        await self._pool.aclose()
