"""A real local HTTP server that answers chat completions as an OpenAI-compatible LLM server would.

It stands in for the external model provider (vLLM, llama.cpp, Ollama...): the one thing tests may fake.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_PATH = "/v1/chat/completions"
HOLD_TIMEOUT_SECONDS = 10.0  # a test that never releases the server must not hang forever


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received; body is the parsed JSON, or None when it was not JSON."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any


class FakeChatServer:
    """Streams `pieces` as chat.completion.chunk events; may hold after the first piece, or fail.

    `with FakeChatServer(pieces=["Hi ", "there"]) as server:` serves on `server.base_url`
    (http://127.0.0.1:PORT/v1, or the host and port given; TLS when given a server context) until the
    block ends. The settings are attributes a test may change between requests; every request,
    whatever its outcome, is in `server.requests`.
    """

    def __init__(
        self,
        *,
        pieces: Sequence[str] = ("Hello!",),
        hold_after_first: threading.Event | None = None,
        hold_timeout: float = HOLD_TIMEOUT_SECONDS,
        status: int = 200,
        events: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.pieces = list(pieces)
        self.hold_after_first = hold_after_first  # after the first piece, wait until this is set
        self.hold_timeout = hold_timeout
        self.status = status  # anything but 200 answers with an OpenAI-style error body
        # Raw event-stream text sent as given instead of the pieces (no [DONE] added): for comments,
        # in-stream errors, malformed or cut-off streams.
        self.events = None if events is None else list(events)
        self.headers = dict(headers or {})  # added to every response (e.g. Location, Content-Encoding)
        self._requests: list[RecordedRequest] = []
        self._holds_timed_out = 0
        self._lock = threading.Lock()
        self._http = _HTTPServer(self, (host, port))
        self.server_names: list[str | None] = []  # the TLS server name (SNI) of each handshake
        if tls is not None:
            tls.sni_callback = lambda _socket, name, _context: self.server_names.append(name)
            self._http.socket = tls.wrap_socket(self._http.socket, server_side=True)
        self._thread = threading.Thread(target=self._serve, name="fake-chat", daemon=True)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, to which clients append /chat/completions."""
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def holds_timed_out(self) -> int:
        """How many replies resumed because hold_timeout passed, not because the event was set."""
        with self._lock:
            return self._holds_timed_out

    def hold(self) -> None:
        """Waits for hold_after_first, if any (called by the server's threads after the first piece)."""
        if self.hold_after_first is not None and not self.hold_after_first.wait(self.hold_timeout):
            with self._lock:
                self._holds_timed_out += 1

    def record(self, request: RecordedRequest) -> None:
        """Keeps one received request (called by the server's threads)."""
        with self._lock:
            self._requests.append(request)

    def _serve(self) -> None:
        # A short poll interval: shutdown() waits for the serving loop's next poll.
        self._http.serve_forever(poll_interval=0.02)

    def __enter__(self) -> FakeChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.hold_after_first is not None:
            self.hold_after_first.set()  # frees a handler still holding its reply
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(HOLD_TIMEOUT_SECONDS)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, chat: FakeChatServer, address: tuple[str, int]) -> None:
        self.chat = chat
        super().__init__(address, _ChatHandler)


class _ChatHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, as real model servers use
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: tests read `requests` rather than a log."""

    def do_POST(self) -> None:
        chat = self.server.chat
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in self.headers.items()}
        chat.record(RecordedRequest("POST", self.path, headers, body))
        if self.path != CHAT_PATH:
            self._send_json(404, _error("Not found.", "not_found_error"))
        elif not isinstance(body, dict):
            self._send_json(400, _error("The body must be a JSON object.", "invalid_request_error"))
        elif chat.status != 200:
            self._send_json(chat.status, _error("The model failed.", "server_error"))
        elif body.get("stream"):
            self._stream(chat)
        else:
            self._send_json(200, _completion("".join(chat.pieces)))

    def _stream(self, chat: FakeChatServer) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self._send_extra_headers()
        self.end_headers()
        try:
            if chat.events is not None:
                for text in chat.events:
                    self._send_chunk(text)
            else:
                self._send_chunk(_event({"role": "assistant", "content": ""}, None))
                for number, piece in enumerate(chat.pieces):
                    self._send_chunk(_event({"content": piece}, None))
                    if number == 0:
                        chat.hold()
                self._send_chunk(_event({}, "stop"))
                self._send_chunk("data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away mid-stream, as clients may

    def _send_chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self._send_extra_headers()
        self.end_headers()
        self.wfile.write(data)

    def _send_extra_headers(self) -> None:
        for name, value in self.server.chat.headers.items():
            self.send_header(name, value)


def _event(delta: dict[str, str], finish_reason: str | None) -> str:
    chunk = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(chunk)}\n\n"


def _completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
    }


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}
