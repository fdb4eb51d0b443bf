"""Agent backends that stream a reply: from the knowledge entries, or from an OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

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
_CHAT_ROLES = {"visitor": "user", "bot": "assistant", "agent": "assistant"}
_WORD_GROUP = re.compile(rf"\s*(?:\S+\s*){{1,{WORDS_PER_DELTA}}}")


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

    def reply(self, request: AgentInput) -> AsyncIterator[AgentEvent]:
        """The reply's events, in order."""
        ...


@dataclass(frozen=True)
class AgentDefaults:
    """Settings from the environment, used where an instance leaves its own null."""

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None  # sent as a Bearer token; never logged
    timeout_seconds: float = 30.0


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

    async def reply(self, request: AgentInput) -> AsyncIterator[AgentEvent]:
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
        client: httpx.AsyncClient,
        settings: AgentSettings,
        defaults: AgentDefaults,
        indexes: IndexCache,
    ) -> None:
        self._client = client
        self._settings = settings
        self._defaults = defaults
        self._indexes = indexes

    async def reply(self, request: AgentInput) -> AsyncIterator[AgentEvent]:
        """Each content delta of the streamed completion, as soon as it arrives."""
        base_url = self._settings.base_url or self._defaults.base_url
        model = self._settings.model or self._defaults.model
        if not base_url or not model:
            raise AgentFailed(NOT_CONFIGURED)
        body: dict[str, Any] = {"model": model, "stream": True, "messages": await self._messages(request)}
        if self._settings.temperature is not None:
            body["temperature"] = self._settings.temperature
        if self._settings.max_tokens is not None:
            body["max_tokens"] = self._settings.max_tokens
        headers = {"Accept": "text/event-stream"}
        if self._defaults.api_key:
            headers["Authorization"] = f"Bearer {self._defaults.api_key}"
        url = _chat_completions_url(base_url)
        try:
            async with self._client.stream("POST", url, json=body, headers=headers) as response:
                if not response.is_success:
                    raise AgentFailed(UNAVAILABLE)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank lines, SSE comments and other fields
                    data = line.removeprefix("data:").strip()
                    if data == "[DONE]":
                        return
                    text = _delta_content(data)
                    if text:
                        yield Delta(text)
        except httpx.HTTPError:
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


def _chat_completions_url(base_url: str) -> httpx.URL:
    """Where to post; a URL no request could reach means the agent is not configured."""
    try:
        url = httpx.URL(base_url.rstrip("/") + "/chat/completions")
    except httpx.InvalidURL:
        raise AgentFailed(NOT_CONFIGURED) from None
    # httpx lets an out-of-range port through to the socket, which fails with an ExceptionGroup.
    if url.scheme not in ("http", "https") or not url.host or not 0 < (url.port or 80) <= 65535:
        raise AgentFailed(NOT_CONFIGURED)
    return url


def _delta_content(data: str) -> str:
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
    """Picks the backend for an instance's settings; owns the shared HTTP client."""

    def __init__(self, *, defaults: AgentDefaults, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._defaults = defaults
        self._indexes = IndexCache()
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(defaults.timeout_seconds),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        self._knowledge = KnowledgeAgent(indexes=self._indexes)

    def for_settings(self, settings: AgentSettings) -> Agent:
        """The OpenAI-compatible backend when asked for, else the knowledge agent (which needs nothing)."""
        if settings.backend == OPENAI_COMPATIBLE_BACKEND:
            return OpenAICompatibleAgent(
                client=self._client, settings=settings, defaults=self._defaults, indexes=self._indexes
            )
        return self._knowledge

    async def close(self) -> None:
        """Closes the HTTP client's connections."""
        await self._client.aclose()
