"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any

from services.common import tracing

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


class JsonFormatter(logging.Formatter):
    """Formats a record and its `extra` fields as one JSON line."""

    _skip = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._skip})
        request_id = _request_id.get()
        if request_id is not None:
            entry.setdefault("request_id", request_id)
        for name, value in tracing.current_ids().items():
            entry.setdefault(name, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)

    def formatException(self, ei: Any) -> str:
        """Where each exception of the chain was raised and its class, never its message."""
        return safe_traceback(ei)


# The request the current task works for (its x-request-id): every line logged meanwhile names it.
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)


def bind_request(request_id: str | None) -> Callable[[], None]:
    """Names `request_id` in every line logged in this context until the returned unbinding runs."""
    token = _request_id.set(request_id)
    return lambda: _request_id.reset(token)


def current_request_id() -> str | None:
    """The request the current task works for, if it is bound."""
    return _request_id.get()


def safe_traceback(exc_info: ExcInfo) -> str:
    """A traceback without exception messages: a message can hold bound SQL parameters or the text of
    a request (personal data), the frames and classes say where to look."""
    _, error, _ = exc_info
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = traceback.extract_tb(current.__traceback__)
        kind = type(current)
        parts.append("".join(traceback.format_list(frames)) + f"{kind.__module__}.{kind.__qualname__}\n")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\nCaused by (most recent last):\n".join(reversed(parts)).rstrip("\n")


def log_loop_exception(logger: logging.Logger) -> Any:
    """An asyncio exception handler that logs the exception's class and traceback, never its message
    (asyncio's own repeats the exception's repr, message included)."""

    def handle(_loop: Any, context: dict[str, Any]) -> None:
        error = context.get("exception")
        extra = {"error": type(error).__name__} if error is not None else {}
        exc_info = (type(error), error, error.__traceback__) if error is not None else None
        logger.error("background task failed", exc_info=exc_info, extra=extra)

    return handle


# Libraries that log every request at INFO (the MCP SDK's "Processing request of type …").
_CHATTY = ("mcp",)


def configure(service: str, level: str = "INFO") -> logging.Logger:
    """Routes all logging through the JSON formatter; returns the service's logger."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    if root.level > logging.DEBUG:
        for name in _CHATTY:  # their INFO lines say nothing the access log does not, once per request
            logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
    return logging.getLogger(f"hydra.{service}")
