"""Widget chat: the visitor's message in, the agent's reply streamed out as Server-Sent Events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from google.api import httpbody_pb2

from services.common import metrics
from services.common.errors import Conflict, NotFound, RateLimited, Unauthenticated
from services.common.fields import parse_limit
from services.common.identity import Identity
from services.public.agents import (
    OPENAI_COMPATIBLE_BACKEND,
    AgentFailed,
    AgentInput,
    Agents,
    Delta,
    Handoff,
    Turn,
)
from services.public.crm import CONVERSATION_NOT_FOUND, CrmConversations
from services.public.gatekeeper import KeyStatus
from services.public.instances import InstanceCatalog
from services.public.limits import ConcurrencyLimit
from services.public.tagging import Tagger, Tags

INSTANCE_NOT_FOUND = "Instance not found"
EVENT_STREAM = "text/event-stream"
HISTORY_TURNS = 20
SUBJECT_LENGTH = 80
# The bot answers only while no human owns the conversation.
BOT_ANSWERS = ("open", "waiting")
AGENT_FAILED_HANDOFF = "The agent could not answer; a human will follow up."
STREAM_ENDED = "This chat is no longer available."
TOO_MANY_FROM_ADDRESS = "Too many chats in progress from your address. Please retry shortly."
TOO_MANY_FOR_INSTANCE = "Too many chats with this agent are in progress. Please retry shortly."
T = TypeVar("T")


@dataclass(frozen=True)
class WidgetLimits:
    """Caps on streams open at once in this process (per client IP, per instance); re-check interval.

    The per-instance cap is also an instance's share of the connections to model servers, so a slow
    server cannot hold more than that many of them, whatever its visitors send.
    """

    streams_per_ip: int = 8
    streams_per_instance: int = 8
    recheck_seconds: float = 2.0


def sse(event: str, data: Mapping[str, Any]) -> httpbody_pb2.HttpBody:
    """One Server-Sent Event as a chunk of the HTTP response body."""
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return httpbody_pb2.HttpBody(
        content_type=EVENT_STREAM, data=f"event: {event}\ndata: {payload}\n\n".encode()
    )


class StreamEnded(Exception):
    """The stream's token was revoked or its instance deleted while it was open."""


class Watch:
    """One open stream: whose it is, and whether it must end now."""

    def __init__(self, caller: Identity, instance_id: uuid.UUID) -> None:
        self.tenant_id = caller.tenant_id
        self.key_id = caller.key_id
        self.instance_id = instance_id
        self.ended = False
        self._scope: asyncio.Timeout | None = None

    def end(self) -> None:
        """Ends the stream: the read it is waiting on is cancelled, and every later one refused."""
        self.ended = True
        if self._scope is not None:
            self._scope.reschedule(asyncio.get_running_loop().time())

    async def next_of(self, events: AsyncIterator[T]) -> T | None:
        """The next of `events` (None at their end); StreamEnded as soon as the stream must end."""
        if self.ended:
            raise StreamEnded()
        # A timeout scope that end() fires at once; it wraps this one read, never a yield of the caller.
        scope = asyncio.timeout(None)
        self._scope = scope
        try:
            async with scope:
                return await anext(events, None)
        except TimeoutError:
            if scope.expired():
                raise StreamEnded() from None
            raise
        finally:
            self._scope = None


class StreamGuard:
    """Ends open streams whose widget token was revoked or whose instance was deleted.

    Every few seconds one question per tenant goes to the gatekeeper and one per instance to the
    instances service, however many streams are open. A peer that cannot answer ends nothing.
    """

    def __init__(
        self, *, keys: KeyStatus, instances: InstanceCatalog, interval: float, logger: logging.Logger
    ) -> None:
        self._keys = keys
        self._instances = instances
        self._interval = interval
        self._log = logger
        self._open: set[Watch] = set()

    @contextlib.contextmanager
    def watching(self, caller: Identity, instance_id: uuid.UUID) -> Iterator[Watch]:
        """A Watch for the block's stream, checked until the block ends."""
        watch = Watch(caller, instance_id)
        self._open.add(watch)
        metrics.WIDGET_STREAMS.inc()
        try:
            yield watch
        finally:
            self._open.discard(watch)
            metrics.WIDGET_STREAMS.dec()

    async def run(self) -> None:
        """Checks the open streams every interval, for as long as the server runs."""
        while True:
            await asyncio.sleep(self._interval)
            if self._open:
                try:
                    await self.check_once()
                except Exception as error:  # the next round tries again; streams are never left unchecked
                    self._log.error("widget stream re-check failed: %s", error.__class__.__name__)

    async def check_once(self) -> None:
        """Ends each open stream whose token is no longer live or whose instance is gone."""
        watches = list(self._open)
        asked: dict[uuid.UUID, set[str]] = {}
        for watch in watches:
            if _is_uuid(watch.key_id):
                asked.setdefault(watch.tenant_id, set()).add(watch.key_id)
        instances = sorted({(w.tenant_id, w.instance_id) for w in watches})
        answers = await asyncio.gather(
            *(self._keys.live(tenant, ids) for tenant, ids in asked.items()),
            *(self._instances.profile(tenant, instance) for tenant, instance in instances),
            return_exceptions=True,
        )
        live = dict(zip(asked, answers[: len(asked)], strict=True))
        profiles = dict(zip(instances, answers[len(asked) :], strict=True))
        failures = {type(a).__name__ for a in answers if isinstance(a, BaseException)}
        if failures:
            self._log.warning("could not re-check open widget streams: %s", ", ".join(sorted(failures)))
        for watch in watches:
            keys = live.get(watch.tenant_id)
            revoked = (
                isinstance(keys, set) and watch.key_id in asked[watch.tenant_id] and watch.key_id not in keys
            )
            deleted = profiles[(watch.tenant_id, watch.instance_id)] is None
            if revoked or deleted:
                watch.end()


def _require_token_of(caller: Identity, instance_id: uuid.UUID) -> None:
    """Refuses a widget token bound to another instance than the path's."""
    if caller.instance_id != str(instance_id):
        raise Unauthenticated("Widget token is not valid for this instance.")


# What the visitor sees of a conversation: not its system notes.
VISITOR_ROLES = frozenset({"visitor", "agent", "bot"})


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


class WidgetChat:
    """Runs one chat turn: check the instance, store the visitor's message, stream and store the reply."""

    def __init__(
        self,
        *,
        instances: InstanceCatalog,
        crm: CrmConversations,
        agents: Agents,
        tagger: Tagger,
        guard: StreamGuard,
        limits: WidgetLimits,
        logger: logging.Logger,
    ) -> None:
        self._instances = instances
        self._crm = crm
        self._agents = agents
        self._tagger = tagger
        self._guard = guard
        self._per_ip = ConcurrencyLimit(limits.streams_per_ip)
        self._per_instance = ConcurrencyLimit(limits.streams_per_instance)
        self._log = logger

    async def messages(
        self,
        caller: Identity,
        instance_id: uuid.UUID,
        conversation_id: str,
        *,
        cursor: str | None,
        limit: int | None,
    ) -> tuple[list[Any], str]:
        """The visitor's view of a conversation of the instance: its messages after `cursor` (the latest
        ones without), internal notes left out, and the cursor to poll with next."""
        _require_token_of(caller, instance_id)
        if not _is_uuid(conversation_id):
            raise NotFound(CONVERSATION_NOT_FOUND)
        count = parse_limit(limit, default=50, maximum=100)
        messages, next_cursor = await self._crm.messages_after(
            caller.tenant_id, conversation_id, instance_id=instance_id, after=cursor or "", limit=count
        )
        return [m for m in messages if m.role in VISITOR_ROLES], next_cursor

    async def turn(
        self, caller: Identity, instance_id: uuid.UUID, fields: Mapping[str, Any], *, client_ip: str = ""
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        """The response stream; every check that can refuse the request runs before its first event."""
        _require_token_of(caller, instance_id)
        with contextlib.ExitStack() as held:
            # Cheapest first: a flood is refused before it costs a lookup.
            if client_ip:
                held.enter_context(self._per_ip.hold(client_ip, RateLimited(TOO_MANY_FROM_ADDRESS)))
            held.enter_context(self._per_instance.hold(instance_id, RateLimited(TOO_MANY_FOR_INSTANCE)))
            instance = await self._instances.profile(caller.tenant_id, instance_id)
            if instance is None:
                raise NotFound(INSTANCE_NOT_FOUND)
            if not instance.active:
                raise Conflict("Instance is paused; its widget does not answer.")
            message: str = fields["message"]
            tagging = asyncio.get_running_loop().run_in_executor(None, self._tagger.tag, message)
            try:
                stored = await self._store_visitor_message(
                    caller, instance_id, fields.get("conversation_id"), message
                )
            except BaseException:
                await asyncio.gather(tagging, return_exceptions=True)
                raise
            conversation = stored.conversation
            yield sse("conversation", {"conversation_id": conversation.id})
            with self._guard.watching(caller, instance_id) as watch:
                async for chunk in self._answer(
                    caller,
                    instance=instance,
                    conversation=conversation,
                    visitor_message_id=stored.message.id,
                    message=message,
                    tagging=tagging,
                    watch=watch,
                ):
                    yield chunk

    async def _store_visitor_message(
        self, caller: Identity, instance_id: uuid.UUID, conversation_id: uuid.UUID | None, message: str
    ) -> Any:
        if conversation_id is None:
            # A subject is one line; the visitor's message may span several.
            subject = " ".join(message.split())[:SUBJECT_LENGTH]
            opened = await self._crm.open(caller.tenant_id, instance_id=instance_id, subject=subject)
            conversation_id = uuid.UUID(opened.id)
        return await self._crm.add_message(
            caller.tenant_id, str(conversation_id), role="visitor", content=message, instance_id=instance_id
        )

    async def _answer(
        self,
        caller: Identity,
        *,
        instance: Any,
        conversation: Any,
        visitor_message_id: str,
        message: str,
        tagging: asyncio.Future[Tags],
        watch: Watch,
    ) -> AsyncIterator[httpbody_pb2.HttpBody]:
        """After the stream started: deltas, then the stored reply in `done`, or an in-band `error`."""
        tenant = caller.tenant_id
        handoff = ""
        reply: list[str] = []
        try:
            if conversation.status in BOT_ANSWERS:
                history = await self._history(tenant, conversation.id, visitor_message_id, instance)
                agent = self._agents.for_settings(instance.agent)
                request = AgentInput(
                    system_prompt=instance.system_prompt,
                    knowledge=instance.knowledge,
                    history=history,
                    message=message,
                )
                events = agent.reply(request)
                started, outcome = time.perf_counter(), "answered"
                try:
                    while (event := await watch.next_of(events)) is not None:
                        if isinstance(event, Delta) and event.text:
                            reply.append(event.text)
                            yield sse("delta", {"content": event.text})
                        elif isinstance(event, Handoff):
                            handoff = event.reason
                except AgentFailed as failure:
                    outcome = "failed"
                    await self._annotate(tenant, conversation, await tagging, AGENT_FAILED_HANDOFF)
                    yield sse("error", {"detail": str(failure)})
                    return
                except StreamEnded:
                    # The token or the instance is gone: nothing more is written for it.
                    outcome = "ended"
                    yield sse("error", {"detail": STREAM_ENDED})
                    return
                finally:
                    await events.aclose()
                    if instance.agent.backend == OPENAI_COMPATIBLE_BACKEND:  # a model server's turn
                        metrics.MODEL_CALLS.labels(outcome).observe(time.perf_counter() - started)
            stored_id = None
            if reply:
                added = await self._crm.add_message(
                    tenant, conversation.id, role="bot", content="".join(reply)
                )
                stored_id = added.message.id
            final = await self._annotate(tenant, conversation, await tagging, handoff)
            yield sse(
                "done",
                {
                    "conversation_id": conversation.id,
                    "message_id": stored_id,
                    "status": final.status,
                    "handoff": final.status == "escalated",
                },
            )
        except Exception as error:  # the status line is gone: the client learns of a failure in-band
            self._log.warning("widget turn failed after streaming began: %s", error.__class__.__name__)
            yield sse("error", {"detail": "The reply could not be completed. Please try again."})
        finally:
            if not tagging.done():
                tagging.cancel()

    async def _history(
        self, tenant: uuid.UUID, conversation_id: str, current: str, instance: Any
    ) -> list[Turn]:
        """Earlier turns, for backends that read them (the knowledge agent answers the message alone)."""
        if instance.agent.backend == "knowledge":
            return []
        messages = await self._crm.history(tenant, conversation_id, limit=HISTORY_TURNS + 1)
        return [Turn(role=m.role, content=m.content) for m in messages if m.id != current]

    async def _annotate(self, tenant: uuid.UUID, conversation: Any, tags: Tags, handoff: str) -> Any:
        """Rolls the turn's tags up onto the conversation; a general intent never replaces a specific one."""
        values = {
            name: value
            for name, value in (("sentiment", tags.sentiment), ("language", tags.language))
            if value
        }
        current_intent = (
            conversation.intent.string_value if conversation.intent.HasField("string_value") else ""
        )
        if tags.intent != "general" or not current_intent:
            values["intent"] = tags.intent
        return await self._crm.annotate(tenant, conversation.id, tags=values, handoff_reason=handoff)
