"""The open-loop load generator: every scheduled request is sent, numbered, and its answer counted."""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bench.paced import paced


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Envoy answers
    seen: list[tuple[str, dict[str, str], str]] = []
    collecting: list[bool] = []  # whether the process's garbage collector was on, per request
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        with self.lock:
            self.seen.append((self.path, dict(self.headers), body))
            self.collecting.append(gc.isenabled())
        refused = json.loads(body)["n"] % 5 == 0
        answer = b'{"ok": true}'
        self.send_response(500 if refused else 201)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self) -> None:
        with self.lock:
            self.seen.append((self.path, dict(self.headers), ""))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Recorder.seen = []
    _Recorder.collecting = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/api/v1/tickets?x=1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_every_scheduled_request_is_sent_numbered_and_counted(server: str) -> None:
    figures = paced(server, "hmcp_k", rate=40, duration=0.5, body='{"n": {n}}', clients=3)

    assert len(_Recorder.seen) == 20
    assert sorted(json.loads(body)["n"] for _, _, body in _Recorder.seen) == list(range(20))
    assert {path for path, _, _ in _Recorder.seen} == {"/api/v1/tickets?x=1"}
    assert {headers["Authorization"] for _, headers, _ in _Recorder.seen} == {"Bearer hmcp_k"}
    assert {headers["X-Forwarded-For"] for _, headers, _ in _Recorder.seen} == {
        "10.0.0.0",
        "10.0.0.1",
        "10.0.0.2",
    }
    assert figures["non_2xx"] == 4  # n = 0, 5, 10, 15
    assert figures["p50"] <= figures["p90"] <= figures["p99"]
    assert 1 <= figures["connections"] <= 20
    assert 0 <= figures["late_max"] < 500


def test_no_garbage_collection_pauses_the_generator_while_a_run_lasts(server: str) -> None:
    assert gc.isenabled()

    paced(server, "hmcp_k", rate=40, duration=0.25, body='{"n": {n}}')

    assert _Recorder.collecting == [False] * 10
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_without_a_body_each_request_is_a_get_with_no_content_headers(server: str) -> None:
    figures = paced(server, "hmcp_k", rate=40, duration=0.25)

    assert len(_Recorder.seen) == 10
    assert figures["non_2xx"] == 0
    assert all("Content-Length" not in headers for _, headers, _ in _Recorder.seen)
    assert all("X-Forwarded-For" not in headers for _, headers, _ in _Recorder.seen)


def test_an_address_nobody_listens_on_counts_every_request_as_failed() -> None:
    figures = paced("http://127.0.0.1:9/", "k", rate=20, duration=0.25)

    assert figures["non_2xx"] == 5
    assert figures["rps"] == 0
