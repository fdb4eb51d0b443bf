"""How handling an event fails, and whose fault that is (which decides how it is retried)."""

from __future__ import annotations

import enum

import grpc

from services.common.db import is_connection_loss
from services.common.errors import Unavailable
from services.common.events.bus import Event


class Unfinished(Exception):
    """A batch handler stopped part-way: its first `done` events were handled, the rest were not."""

    def __init__(self, done: int, cause: BaseException) -> None:
        super().__init__(f"stopped after {done} events: {type(cause).__name__}")
        self.done = done
        self.cause = cause


class EventFailed(Exception):
    """Handling a batch stopped at `event`: the events before it were handled (`handled` of them now,
    the others before), the ones after it were not tried."""

    def __init__(self, event: Event, cause: BaseException, *, handled: int = 0) -> None:
        super().__init__(f"event {event.id} failed: {type(cause).__name__}")
        self.event = event
        self.cause = cause
        self.handled = handled


class PermanentError(Exception):
    """The event can never be handled (the same input fails the same way): no retry, a dead letter.

    Its message is a label safe to store (an error class, a reply code), never user text.
    """


class Transient(Exception):
    """What the event goes to could not take it now (busy, or out of service): tried again later."""


class Unreachable(Exception):
    """What the events go to could not be reached at all: no event was tried."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


class Fault(enum.Enum):
    """Whose fault a failure is, which decides how it is retried."""

    PERMANENT = "permanent"  # the event's, for good: a dead letter at once
    EVENT = "event"  # the event's, maybe for now: retried a bounded number of times
    DOWNSTREAM = "downstream"  # what the events go to: counted against the event only if others get through


_DOWNSTREAM_CODES = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
}


def classify(error: BaseException) -> Fault:
    """Whose fault an error raised while handling an event is."""
    if isinstance(error, PermanentError):
        return Fault.PERMANENT
    if isinstance(error, Transient | Unreachable | Unavailable | OSError | TimeoutError):
        return Fault.DOWNSTREAM  # connection refused, reset or timed out; a peer that did not answer
    if is_connection_loss(error):
        return Fault.DOWNSTREAM
    if isinstance(error, grpc.aio.AioRpcError) and error.code() in _DOWNSTREAM_CODES:
        return Fault.DOWNSTREAM
    return Fault.EVENT


def error_label(error: BaseException) -> str:
    """What may be recorded of an error: its class (and a reply code), never its text (it may hold
    addresses or message bodies)."""
    if isinstance(error, Unreachable):
        return type(error.cause).__name__
    if isinstance(error, PermanentError | Transient) and error.args:
        return str(error.args[0])[:200]
    return type(error).__name__
