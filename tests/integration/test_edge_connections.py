"""The real Envoy with the generated config and nothing behind it: its connection cap and overload manager."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edge.bindings import load_bindings
from edge.envoy_config import EdgeSettings, render
from hydractl.stack import envoy_binary
from services.common import config
from testbed.servers import free_port

MAX_CONNECTIONS = 3


@pytest.fixture
def envoy(tmp_path: Path) -> Iterator[EdgeSettings]:
    """An Envoy allowing MAX_CONNECTIONS client connections; every upstream is a closed port."""
    settings = EdgeSettings(
        listen_host="127.0.0.1",
        port=free_port(),
        admin_port=free_port(),
        upstreams={name: ["127.0.0.1:1"] for name in config.DEFAULT_PORTS},
        max_connections=MAX_CONNECTIONS,
    )
    path = tmp_path / "envoy.yaml"
    path.write_text(json.dumps(render(settings, load_bindings())))
    argv = [envoy_binary(), "-c", str(path), "--disable-hot-restart", "--log-level", "warn"]
    log = tmp_path / "envoy.log"
    with log.open("w") as output, subprocess.Popen(argv, stderr=output) as process:
        try:
            deadline = time.monotonic() + 30
            while not _ready(settings.admin_port):
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            yield settings
        finally:
            process.terminate()


def _ready(admin_port: int) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"http://127.0.0.1:{admin_port}/ready", timeout=1).status_code == 200
    return False


def answers(port: int) -> bool:
    """Whether a new connection gets an HTTP answer (here a 404 for an unknown path), not a close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /nowhere HTTP/1.1\r\nhost: edge\r\nconnection: close\r\n\r\n")
        try:
            return sock.recv(64).startswith(b"HTTP/1.1 404")
        except ConnectionResetError:
            return False


def test_connections_past_the_limit_are_closed_and_the_admin_port_still_answers(envoy: EdgeSettings) -> None:
    held = [socket.create_connection(("127.0.0.1", envoy.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.5)  # Envoy has accepted them all
        assert not answers(envoy.port)
        stat = f"listener.127.0.0.1_{envoy.port}.downstream_global_cx_overflow"
        overflows = httpx.get(f"http://127.0.0.1:{envoy.admin_port}/stats?filter={stat}").text
        assert int(overflows.split(": ")[1]) >= 1
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while not answers(envoy.port):
        assert time.monotonic() < deadline, "a freed connection slot was never reused"
        time.sleep(0.2)


def test_the_overload_manager_watches_the_heap(envoy: EdgeSettings) -> None:
    stats = httpx.get(f"http://127.0.0.1:{envoy.admin_port}/stats?filter=overload").text
    for action in ("shrink_heap", "stop_accepting_requests", "disable_http_keepalive"):
        assert f"overload.envoy.overload_actions.{action}.active: 0" in stats
    assert "overload.envoy.resource_monitors.fixed_heap.pressure" in stats
