"""A real local HTTP server answering the few Stripe API calls the platform makes, and Stripe's way of
signing webhook payloads. Stripe is outside our world: the one thing these tests stand in for."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHECKOUT_HOST = "https://checkout.stripe.test"
PORTAL_HOST = "https://billing.stripe.test"


@dataclass(frozen=True)
class StripeCall:
    """One API call the server received: method, path and its form parameters."""

    method: str
    path: str
    params: dict[str, list[str]]
    authorization: str


class FakeStripe:
    """`with FakeStripe() as stripe:` serves customers, Checkout and portal sessions and subscription
    cancels on `stripe.base_url` until the block ends; `down` makes every call fail with a 500."""

    def __init__(self) -> None:
        self.calls: list[StripeCall] = []
        self.down = False
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                self._answer("POST")

            def do_DELETE(self) -> None:
                self._answer("DELETE")

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("content-length") or 0)
                params = urllib.parse.parse_qs(self.rfile.read(length).decode())
                with fake._lock:
                    fake.calls.append(
                        StripeCall(method, self.path, params, self.headers.get("authorization", ""))
                    )
                status, body = (
                    (500, {"error": {"type": "api_error", "message": "down"}})
                    if fake.down
                    else fake.answer(method, self.path, params)
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, method: str, path: str, params: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        one = {key: values[0] for key, values in params.items()}
        if method == "POST" and path == "/v1/customers":
            return 200, {"id": f"cus_{secrets.token_hex(6)}", "object": "customer", "email": one.get("email")}
        if method == "POST" and path == "/v1/checkout/sessions":
            session = f"cs_test_{secrets.token_hex(8)}"
            return 200, {
                "id": session,
                "object": "checkout.session",
                "url": f"{CHECKOUT_HOST}/c/pay/{session}",
            }
        if method == "POST" and path == "/v1/billing_portal/sessions":
            session = f"bps_{secrets.token_hex(8)}"
            return 200, {
                "id": session,
                "object": "billing_portal.session",
                "url": f"{PORTAL_HOST}/p/session/{session}",
            }
        if method == "DELETE" and path.startswith("/v1/subscriptions/"):
            return 200, {"id": path.rsplit("/", 1)[1], "object": "subscription", "status": "canceled"}
        return 404, {"error": {"type": "invalid_request_error", "message": f"no {method} {path}"}}

    def made(self, method: str, path: str) -> list[StripeCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method and c.path == path]

    def __enter__(self) -> FakeStripe:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def signed(event: dict[str, Any], secret: str, *, at: int | None = None) -> tuple[bytes, str]:
    """An event's payload and its Stripe-Signature header, signed as Stripe signs them."""
    payload = json.dumps(event).encode()
    timestamp = int(time.time()) if at is None else at
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, f"t={timestamp},v1={signature}"


def subscription_event(
    event_id: str,
    kind: str,
    *,
    customer: str,
    price: str,
    status: str = "active",
    created: int | None = None,
    cancel_at_period_end: bool = False,
) -> dict[str, Any]:
    """A customer.subscription.* event as Stripe sends it (the period on the subscription's item)."""
    now = int(time.time()) if created is None else created
    return {
        "id": event_id,
        "object": "event",
        "type": f"customer.subscription.{kind}",
        "created": now,
        "data": {
            "object": {
                "id": f"sub_{customer}",
                "object": "subscription",
                "customer": customer,
                "status": status,
                "cancel_at_period_end": cancel_at_period_end,
                "items": {
                    "object": "list",
                    "data": [
                        {
                            "id": "si_1",
                            "object": "subscription_item",
                            "price": {"id": price, "object": "price"},
                            "current_period_start": now,
                            "current_period_end": now + 30 * 86400,
                        }
                    ],
                },
            }
        },
    }
