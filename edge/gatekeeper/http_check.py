"""Envoy's ext_authz over HTTP/1.1: one request per check, the route's policy in its headers (and, on
routes whose surface reads bodies as FastAPI does, the request's body, checked to be JSON).

A grpc.aio server costs about 0.25 ms of CPU per call before any of our code runs; this protocol
costs a few tens of microseconds, and Check runs once for every keyed request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, cast

from edge.gatekeeper.authorizer import Admission, Authorizer, RouteAccess
from edge.gatekeeper.issuer import JWKS_PATH
from services.common import tracing
from services.common.errors import HydraError, Unauthenticated, Unavailable
from services.common.fields import check_json_body
from services.common.identity import CLIENT_IP_HEADER, IDENTITY_HEADERS
from services.common.logging import bind_request
from services.common.surfaces import FALLBACK, REQUEST_ID_HEADER, render

# Envoy adds these to every check request (per route); a client's own headers never reach us as these.
ROUTE_HEADER_PREFIX = "x-hydra-route-"
# Envoy removes the request headers named here before the request goes upstream.
HEADERS_TO_REMOVE = "x-envoy-auth-headers-to-remove"
# Set by Envoy when the body it sends is cut at the route's limit: not the whole body, so not checked.
PARTIAL_BODY_HEADER = "x-envoy-auth-partial-body"
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024  # of a check's body (what Envoy sends of a request's, at most)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    431: "Too Large",
}
Keys = Callable[[], dict[str, Any]]  # the embedded issuer's JWKS
_CHECK_FAILED = "Authorization is temporarily unavailable. Retry safe."


def route_access(headers: Mapping[str, str]) -> RouteAccess:
    """The route's policy from the x-hydra-route-* headers Envoy adds."""
    cut = len(ROUTE_HEADER_PREFIX)
    return RouteAccess.from_policy(
        {k[cut:].replace("-", "_"): v for k, v in headers.items() if k.startswith(ROUTE_HEADER_PREFIX)}
    )


def encode_response(status: int, headers: Mapping[str, str], body: bytes = b"") -> bytes:
    """One HTTP/1.1 response, ready to write."""
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Denied')}", f"content-length: {len(body)}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def admission_response(admission: Admission, route: RouteAccess, request_id: str | None = None) -> bytes:
    """An Admission in Envoy's HTTP terms: 200 with identity headers, or the surface's error (naming
    the request)."""
    if admission.error is None:
        missing = [h for h in IDENTITY_HEADERS if h not in admission.identity]
        extra = {HEADERS_TO_REMOVE: ",".join(missing)} if missing else {}
        return encode_response(200, {**admission.identity, **admission.rate_headers, **extra})
    rendered = render(admission.error, route.surface, request_id)
    headers = {"content-type": "application/json", **admission.rate_headers}
    return encode_response(rendered.http_status, headers, rendered.body.encode())


class _Request:
    """A parsed check request: its path, its headers (names lower-cased) and its body, if Envoy sent one."""

    __slots__ = ("body", "headers", "keep_alive", "path")

    def __init__(self, path: str, headers: dict[str, str], keep_alive: bool) -> None:
        self.path = path
        self.headers = headers
        self.keep_alive = keep_alive
        self.body = b""


class _BadRequest(Exception):
    """The peer sent something that is not a check request; the connection closes."""

    def __init__(self, status: int) -> None:
        self.status = status


def parse_head(head: bytes) -> tuple[_Request, int]:
    """The request in a head (without its blank line) and the length of the body that follows."""
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400)
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequest(400)
        name, value = name.lower(), value.strip()
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    if "transfer-encoding" in headers:
        raise _BadRequest(400)  # Envoy sends a check's body, when it sends one, with its length
    length = headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        raise _BadRequest(400)
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection and (parts[2] != "HTTP/1.0" or "keep-alive" in connection)
    return _Request(parts[1], headers, keep_alive), int(length)


class CheckProtocol(asyncio.Protocol):
    """One Envoy connection: requests answered in the order they came."""

    def __init__(self, authorizer: Authorizer, logger: logging.Logger, jwks: Keys | None = None) -> None:
        self._authorizer = authorizer
        self._log = logger
        self._jwks = jwks
        self._buffer = bytearray()
        self._body_left = 0
        self._reading: _Request | None = None  # the request whose body is still arriving
        self._queue: deque[_Request] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._worker is not None:
            self._worker.cancel()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            self._parse()
        except _BadRequest as bad:
            self._fail(bad.status)
            return
        if self._queue and self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._answer())

    def _parse(self) -> None:
        while not self._closing:
            if self._reading is not None:
                if len(self._buffer) < self._body_left:
                    return
                request, self._reading = self._reading, None
                request.body = bytes(self._buffer[: self._body_left])
                del self._buffer[: self._body_left]
                self._body_left = 0
                self._take(request)
                continue
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    raise _BadRequest(431)
                return
            request, self._body_left = parse_head(bytes(self._buffer[:end]))
            del self._buffer[: end + 4]
            if self._body_left:
                self._reading = request
            else:
                self._take(request)

    def _take(self, request: _Request) -> None:
        """Queues a whole request; after one that closes the connection, nothing more is read."""
        self._queue.append(request)
        if not request.keep_alive:
            self._closing = True

    def _fail(self, status: int) -> None:
        self._closing = True
        self._queue.clear()
        if self._transport is not None:
            self._transport.write(encode_response(status, {"connection": "close"}))
            self._transport.close()

    async def _answer(self) -> None:
        while self._queue:
            request = self._queue.popleft()
            unbind = bind_request(request.headers.get(REQUEST_ID_HEADER))
            try:
                with tracing.server_span("authz check", request.headers):
                    response = await self._decide(request)
            finally:
                unbind()
            if self._transport is None or self._transport.is_closing():
                return
            self._transport.write(response)
            if not request.keep_alive:
                self._transport.close()
                return
        self._worker = None

    async def _decide(self, request: _Request) -> bytes:
        if request.path.split("?", 1)[0] == JWKS_PATH and not request.headers.get(
            ROUTE_HEADER_PREFIX + "auth"
        ):
            return self._keys()
        try:
            route = route_access(request.headers)
        except ValueError:  # not a route of a surface that takes keys: the edge config is wrong
            rendered = render(
                Unauthenticated("This route does not take API keys."),
                FALLBACK,
                request.headers.get(REQUEST_ID_HEADER),
            )
            return encode_response(
                rendered.http_status, {"content-type": "application/json"}, rendered.body.encode()
            )
        try:
            admission = await self._authorizer.admit(
                route, request.headers, request.path, client=request.headers.get(CLIENT_IP_HEADER, "")
            )
        except ValueError:
            admission = Admission(Unauthenticated("This route does not take API keys."))
        except HydraError as error:  # a peer it needed is down
            admission = Admission(error)
        except Exception as error:
            self._log.error(
                "check failed", exc_info=error, extra={"request_id": request.headers.get(REQUEST_ID_HEADER)}
            )
            admission = Admission(Unavailable(_CHECK_FAILED))
        if (
            admission.error is None
            and route.surface.checks_json
            and 0 < len(request.body) < MAX_BODY_BYTES  # Envoy cuts a body at exactly that length
            and request.headers.get(PARTIAL_BODY_HEADER) != "true"
        ):
            try:
                check_json_body(request.body)
            except HydraError as error:
                admission = Admission(error, rate_headers=admission.rate_headers)
            except Exception as error:  # never the worker's end: the connection's next checks wait on it
                self._log.error("body check failed", exc_info=error)
                admission = Admission(Unavailable(_CHECK_FAILED))
        return admission_response(admission, route, request.headers.get(REQUEST_ID_HEADER))

    def _keys(self) -> bytes:
        """The embedded issuer's JWKS (Envoy's jwt_authn fetches it here), or 404 without one."""
        if self._jwks is None:
            return encode_response(404, {})
        body = json.dumps(self._jwks()).encode()
        return encode_response(200, {"content-type": "application/json", "cache-control": "max-age=30"}, body)


class CheckServer:
    """The listener Envoy sends its checks to (and, with an embedded issuer, fetches its JWKS from)."""

    def __init__(
        self, address: str, authorizer: Authorizer, logger: logging.Logger, jwks: Keys | None = None
    ) -> None:
        self._address = address
        self._authorizer = authorizer
        self._log = logger
        self._jwks = jwks
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Binds host:port and starts answering (OSError when the address is taken)."""
        host, _, port = self._address.rpartition(":")
        self._server = await asyncio.get_running_loop().create_server(
            lambda: CheckProtocol(self._authorizer, self._log, self._jwks), host, int(port)
        )
        self._log.info("serving checks", extra={"address": self._address})

    async def close(self) -> None:
        """Stops accepting connections; open ones end with the process."""
        if self._server is not None:
            self._server.close()
