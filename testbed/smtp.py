"""A real SMTP server for tests and benchmarks (aiosmtpd), recording what it receives; it can stall
deliveries, or refuse recipients, on demand."""

from __future__ import annotations

import asyncio
import contextlib
import email
import threading
from collections.abc import Iterator
from email.message import Message
from typing import Any

from aiosmtpd.controller import Controller

from testbed.servers import free_port


class SmtpSink:
    """What the server received; while `stall` is set, DATA is not answered (a relay hanging mid-send);
    a recipient in `refuse` gets that reply to RCPT (e.g. "550 5.1.1 No such user")."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.stall = threading.Event()
        self.stalled = threading.Event()  # set once a delivery is being held
        self.refuse: dict[str, str] = {}
        self.refused: list[str] = []  # every recipient refused, once per refusal
        self.url = ""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.refuse.get(address)
        if reply is not None:
            self.refused.append(address)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        while self.stall.is_set():
            self.stalled.set()
            await asyncio.sleep(0.05)
        if server.transport is None or server.transport.is_closing():
            return "421 client gone"  # never acknowledged, so never accepted
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        return [m for m in self.messages if m["To"] == address]


@contextlib.contextmanager
def smtp_server(port: int | None = None) -> Iterator[SmtpSink]:
    """An SMTP server on a loopback port (a free one unless given)."""
    sink = SmtpSink()
    port = port or free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    sink.url = f"smtp://127.0.0.1:{port}"
    try:
        yield sink
    finally:
        sink.stall.clear()
        controller.stop()
