"""The running RPC's deadline (from the caller's grpc-timeout), for work that must not outlive it."""

from __future__ import annotations

import asyncio
import contextvars

# When the deadline passed before the work began, the work provably did not happen.
NOT_APPLIED = "The request timed out before it was applied; nothing was changed. Retry safe."
MAYBE_APPLIED = "The request timed out; it may have been applied. Check before retrying."

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("hydra_deadline", default=None)


def set_current(deadline: float | None) -> contextvars.Token[float | None]:
    """Binds the running RPC's deadline (event-loop time), done by the server interceptor."""
    return _deadline.set(deadline)


def reset_current(token: contextvars.Token[float | None]) -> None:
    _deadline.reset(token)


def current() -> float | None:
    """The running RPC's deadline in event-loop time, or None when its caller set none."""
    return _deadline.get()


def passed(deadline: float | None) -> bool:
    """Whether `deadline` (event-loop time) is over."""
    return deadline is not None and asyncio.get_running_loop().time() >= deadline
