"""A real local HTTP server that receives webhooks as a tenant's integration would: it verifies each
delivery with the Standard Webhooks reference library and refuses one that does not verify.

It stands in for the tenant's own server, outside our world: the one thing tests may fake.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

HOLD_TIMEOUT_SECONDS = 20.0  # a test that never releases the receiver must not hang forever


@dataclass(frozen=True)
class Delivery:
    """One request the receiver got: its headers (names lower-cased), body, and whether it verified."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    status: int  # what the receiver answered

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class WebhookReceiver:
    """Serves on `url` (http://HOST:PORT/hook) while started; `secret` is the endpoint's secret to verify
    with (None verifies nothing), `status` what it answers, and `hold`, when set, a gate each request
    waits at before answering (cleared: the receiver holds every request until it is set)."""

    def __init__(self, host: str, port: int = 0) -> None:
        self.host = host
        self.port = port
        self.secret: str | None = None
        self.status = 200
        self.hold: threading.Event | None = None
        self.in_flight = 0
        self._deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def verified_events(self) -> list[dict[str, Any]]:
        """The events of the deliveries that verified and were answered 2xx, in arrival order."""
        return [d.event for d in self.deliveries if d.verified and 200 <= d.status < 300]

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = receiver._verify(body, headers)
                with receiver._lock:
                    receiver.in_flight += 1
                try:
                    if receiver.hold is not None:
                        receiver.hold.wait(HOLD_TIMEOUT_SECONDS)
                    status = receiver.status if verified else 401
                    with receiver._lock:
                        receiver._deliveries.append(Delivery(headers, body, verified, status))
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                finally:
                    with receiver._lock:
                        receiver.in_flight -= 1

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def _verify(self, body: bytes, headers: dict[str, str]) -> bool:
        if self.secret is None:
            return True
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            return False
        return True

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
