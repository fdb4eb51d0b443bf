"""Agent backends that stream a reply: answers from the knowledge entries, or any OpenAI-compatible server."""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from services.public.knowledge import KnowledgeEntry, KnowledgeIndex

CONTEXT_ENTRIES = 3
INDEX_CACHE_SIZE = 256
# Phrases with which a visitor asks for a person rather than the bot.
HUMAN_REQUESTS = re.compile(
    r"\b(talk|speak|chat)\s+(to|with)\s+(a\s+|an\s+|some)?(human|person|agent|someone|representative|operator)"
    r"|\b(real|live)\s+(person|human|agent)\b|\bhuman\s+agent\b|\brepresentative\b|\bagent,?\s+please\b",
    re.IGNORECASE,
)
HANDOFF_ON_REQUEST = "Of course. A member of our team will take over this conversation shortly."
HANDOFF_NO_MATCH = (
    "I'm sorry, I don't have an answer to that. I've passed your question to our team, "
    "and a person will follow up here."
)


@dataclass(frozen=True)
class AgentSettings:
    """An instance's model settings."""

    backend: str  # knowledge | openai_compatible
    model: str | None = None
    base_url: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Turn:
    """An earlier message of the conversation (role: visitor, bot, agent or system)."""

    role: str
    content: str


@dataclass(frozen=True)
class AgentInput:
    """What an agent answers: the instance's prompt and knowledge, earlier turns, and the new message."""

    system_prompt: str | None
    knowledge: Sequence[KnowledgeEntry]
    history: Sequence[Turn]
    message: str


@dataclass(frozen=True)
class Delta:
    """The next piece of the reply."""

    text: str


@dataclass(frozen=True)
class Handoff:
    """Hand the conversation to a human, for this reason."""

    reason: str


AgentEvent = Delta | Handoff


class AgentFailed(Exception):
    """The backend could not produce a reply; the message is safe to show a visitor."""


class Agent(Protocol):
    """Produces a reply as a stream of events."""

    def reply(self, request: AgentInput) -> AsyncIterator[AgentEvent]: ...


@dataclass(frozen=True)
class AgentDefaults:
    """Settings applied when an instance leaves them null (from the environment)."""

    base_url: str | None = None
    model: str | None = None
    api_key: str | None = None  # sent as a Bearer token; never logged
    timeout_seconds: float = 30.0


def _chunks(text: str, words: int = 4) -> list[str]:
    """The text in pieces of a few words, whitespace kept, so clients render a stream."""
    parts = re.findall(r"\S+\s*", text)
    return ["".join(parts[i : i + words]) for i in range(0, len(parts), words)] or [text]


class IndexCache:
    """The BM25 index of each knowledge base seen recently (an LRU bounded by entry count)."""

    def __init__(self, size: int = INDEX_CACHE_SIZE) -> None:
        self._size = size
        self._indexes: OrderedDict[tuple[KnowledgeEntry, ...], KnowledgeIndex] = OrderedDict()

    def get(self, entries: Sequence[KnowledgeEntry]) -> KnowledgeIndex:
        key = tuple(entries)
        index = self._indexes.get(key)
        if index is None:
            index = self._indexes[key] = KnowledgeIndex(key)
            if len(self._indexes) > self._size:
                self._indexes.popitem(last=False)
        else:
            self._indexes.move_to_end(key)
        return index


class KnowledgeAgent:
    """Answers with the best-matching entry; hands off when none matches or the visitor asks for a person."""

    def __init__(self, indexes: IndexCache) -> None:
        self._indexes = indexes

    async def reply(self, request: AgentInput) -> AsyncIterator[AgentEvent]:
        if HUMAN_REQUESTS.search(request.message):
            yield Delta(HANDOFF_ON_REQUEST)
            yield Handoff("The visitor asked for a person.")
            return
        # The index drops stop words and generic request words, so any match shares a topic word; a
        # score threshold would not do, as BM25 scores shrink with the size of the knowledge base.
        matches = self._indexes.get(request.knowledge).search(request.message, limit=1)
        if not matches:
            for piece in _chunks(HANDOFF_NO_MATCH):
                yield Delta(piece)
            yield Handoff("No knowledge entry matched the question.")
            return
        for piece in _chunks(matches[0].entry.content):
            yield Delta(piece)


class OpenAICompatibleAgent:
    """Streams a chat completion from an OpenAI-compatible server, with matching knowledge as context."""

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

    def _messages(self, request: AgentInput) -> list[dict[str, str]]:
        system = [request.system_prompt or "You are a helpful customer-support agent. Answer briefly."]
        matches = self._indexes.get(request.knowledge).search(request.message, limit=CONTEXT_ENTRIES)
        if matches:
            system.append("Answer from this knowledge when it applies:")
            system.extend(f"## {m.entry.title}\n{m.entry.content}" for m in matches)
        messages = [{"role": "system", "content": "\n\n".join(system)}]
        roles = {"visitor": "user", "bot": "assistant", "agent": "assistant"}
        messages.extend(
            {"role": roles[turn.role], "content": turn.content}
            for turn in request.history
            if turn.role in roles
        )
        messages.append({"role": "user", "content": request.message})
        return messages

    async def reply(self, request: AgentInput) -> AsyncIterator[AgentEvent]:
        base_url = self._settings.base_url or self._defaults.base_url
        model = self._settings.model or self._defaults.model
        if not base_url or not model:
            raise AgentFailed("The agent is not configured.")
        body: dict[str, Any] = {"model": model, "stream": True, "messages": self._messages(request)}
        if self._settings.temperature is not None:
            body["temperature"] = self._settings.temperature
        if self._settings.max_tokens is not None:
            body["max_tokens"] = self._settings.max_tokens
        headers = {"Authorization": f"Bearer {self._defaults.api_key}"} if self._defaults.api_key else {}
        url = base_url.rstrip("/") + "/chat/completions"
        try:
            async with self._client.stream("POST", url, json=body, headers=headers) as response:
                if response.status_code >= 300:
                    raise AgentFailed("The agent backend is unavailable.")
                async for line in response.aiter_lines():
                    text = _delta_text(line)
                    if text is _DONE:
                        return
                    if text:
                        yield Delta(text)
        except httpx.HTTPError:
            raise AgentFailed("The agent backend is unavailable.") from None


_DONE = object()


def _delta_text(line: str) -> Any:
    """The content of one SSE line of a streamed chat completion ("" when none, _DONE at the end)."""
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return _DONE
    try:
        chunk = json.loads(data)
    except ValueError:
        raise AgentFailed("The agent backend sent an unreadable reply.") from None
    if not isinstance(chunk, dict) or "error" in chunk:
        raise AgentFailed("The agent backend failed.")
    choices = chunk.get("choices") or [{}]
    content = (choices[0].get("delta") or {}).get("content") if isinstance(choices[0], dict) else None
    return content if isinstance(content, str) else ""


class Agents:
    """Picks the backend for an instance's settings; owns the shared HTTP client."""

    def __init__(self, *, defaults: AgentDefaults, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._defaults = defaults
        self._indexes = IndexCache()
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(defaults.timeout_seconds, connect=5.0),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )
        self._knowledge = KnowledgeAgent(self._indexes)

    def for_settings(self, settings: AgentSettings) -> Agent:
        if settings.backend == "openai_compatible":
            return OpenAICompatibleAgent(
                client=self._client, settings=settings, defaults=self._defaults, indexes=self._indexes
            )
        return self._knowledge

    async def close(self) -> None:
        await self._client.aclose()
