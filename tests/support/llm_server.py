"""A real local HTTP server that streams chat completions like an OpenAI-compatible LLM server does.

It stands in for the external model provider (vLLM, llama.cpp, Ollama): the one thing tests may fake.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOLD_TIMEOUT = 10.0  # a broken test must not hang the server forever


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeChatServer:
    """Streams `pieces` as chat.completion.chunk events; optionally holds after the first piece, or fails."""

    pieces: list[str]
    hold_after_first: threading.Event | None = None
    status: int = 200
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                with server._lock:
                    server.requests.append(
                        RecordedRequest(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, json.loads(raw)
                        )
                    )
                if self.path != "/v1/chat/completions" or server.status != 200:
                    body = json.dumps({"error": {"message": "failed", "type": "server_error"}}).encode()
                    self.send_response(server.status if server.status != 200 else 404)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for index, piece in enumerate(server.pieces):
                    self._event(_chunk({"content": piece}, None))
                    if index == 0 and server.hold_after_first is not None:
                        server.hold_after_first.wait(HOLD_TIMEOUT)
                self._event(_chunk({}, "stop"))
                self._send(b"data: [DONE]\n\n")
                self._send(b"")

            def _event(self, payload: dict[str, Any]) -> None:
                self._send(f"data: {json.dumps(payload)}\n\n".encode())

            def _send(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.hold_after_first is not None:
            self.hold_after_first.set()
        self._server.shutdown()
        self._server.server_close()


def _chunk(delta: dict[str, str], finish_reason: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "model": "test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
