"""The HTTP exchange an RPC serves: the request headers the edge passed on as metadata, and headers for
the answer (sent as the call's initial metadata, which the edge turns back into HTTP headers)."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# The HTTP status the edge gives an answer instead of the one it would derive (an error's, or 304).
HTTP_STATUS_HEADER = "x-http-status"


@dataclass
class Exchange:
    """One call's request headers (lower-case names) and the headers its answer should carry."""

    request_headers: Mapping[str, str] = field(default_factory=dict)
    answer_headers: dict[str, str] = field(default_factory=dict)
    conditional: bool = False  # the RPC's access option: it answers with versions (ETag) and checks them


_current: contextvars.ContextVar[Exchange] = contextvars.ContextVar("hydra_exchange")


def bind(exchange: Exchange) -> Callable[[], None]:
    """Makes `exchange` the running call's (done by the server interceptor); returns the unbinding."""
    token = _current.set(exchange)
    return lambda: _current.reset(token)


def current_exchange() -> Exchange:
    """The running call's exchange; a fresh one, never sent, outside a served call."""
    try:
        return _current.get()
    except LookupError:
        return Exchange()
