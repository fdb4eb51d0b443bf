"""An HTTP listener for an ASGI app inside a gRPC process (uvicorn on the process's own event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn

from services.common import tracing
from services.common.config import ConfigError
from services.common.errors import FieldError, ValidationError
from services.common.logging import bind_request
from services.common.surfaces import REQUEST_ID_HEADER

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_STARTUP_SECONDS = 10.0


class AsgiListener:
    """Serves `app` on host:port from start() until close(); `running` is entered around it (e.g. an
    SDK's session manager that must run while the app serves)."""

    def __init__(
        self,
        address: str,
        app: Callable[..., Any],
        logger: logging.Logger,
        running: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        host, _, port = address.rpartition(":")
        self._config = uvicorn.Config(
            _named(app),
            host=host.strip("[]"),
            port=int(port),
            lifespan="off",
            log_config=None,  # the process's JSON logging stays as configured
            access_log=False,
            server_header=False,
            proxy_headers=False,  # the edge is the only client; its address is not the caller's
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(self._config)
        self._address = address
        self._log = logger
        self._running = running
        self._stack = contextlib.AsyncExitStack()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Binds and serves; raises when the address cannot be bound."""
        if self._running is not None:
            await self._stack.enter_async_context(self._running())
        self._task = asyncio.get_running_loop().create_task(self._server.serve())
        async with asyncio.timeout(_STARTUP_SECONDS):
            while not self._server.started:
                if self._task.done():
                    await self._stack.aclose()
                    raise ConfigError(f"cannot listen on {self._address}")
                await asyncio.sleep(0.02)
        self._log.info("serving http", extra={"address": self._address})

    async def close(self) -> None:
        """Stops accepting, lets requests under way finish, then leaves `running`."""
        if self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, SystemExit):
                await self._task
        await self._stack.aclose()


def _named(app: Callable[..., Any]) -> Callable[..., Any]:
    """The app with each HTTP request's id in every line logged for it, and in a server span if tracing."""

    async def named(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        headers = request_headers(scope)
        unbind = bind_request(headers.get(REQUEST_ID_HEADER))
        try:
            with tracing.server_span(f"HTTP {scope['method']}", headers):
                await app(scope, receive, send)
        finally:
            unbind()

    return named


def request_headers(scope: Scope) -> dict[str, str]:
    """An HTTP request's headers, by lower-case name (the last of repeated ones)."""
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive: Receive, limit: int) -> bytes:
    """A request's whole body (what came before a disconnect); ValidationError past `limit` bytes."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if len(body) > limit:
            raise ValidationError(FieldError(("body",), "Request body too large", "too_long"))
        if not message.get("more_body"):
            break
    return bytes(body)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands an app the body already read, then the client's own messages (its
    disconnect)."""
    sent = False

    async def replayed() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
