"""An HTTP listener for an ASGI app inside a gRPC process (uvicorn on the process's own event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import uvicorn

from services.common.config import ConfigError

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
            app,
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
