"""`hydractl up` keeps the stack running: a crashed process is restarted, not fatal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hydractl.cli import create_tenant, mint
from hydractl.stack import PROCESSES, migrate_all
from testbed.stack import stack_env
from tests.support.load import Writes


@dataclass
class Up:
    """A `hydractl up` process and what it wrote."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    url: str

    @property
    def log(self) -> str:
        path = Path(self.env["HYDRA_DATA_DIR"]) / "logs" / "hydractl.log"
        return path.read_text() if path.exists() else ""

    def pid(self, name: str, *, other_than: int = 0, timeout: float = 30.0) -> int:
        """The pid of the child of `hydractl up` running `name` (waiting for one other than `other_than`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for child in children(self.process.pid):
                if child != other_than and _runs(child, name):
                    return child
            assert self.process.poll() is None, f"hydractl up exited:\n{self.log}"
            time.sleep(0.05)
        raise AssertionError(f"no new process {name}:\n{self.log}")


def _runs(pid: int, name: str) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return argv[0].endswith(b"/envoy") if name == "envoy" else PROCESSES[name].encode() in argv


def children(parent: int) -> list[int]:
    """The pids of a process's living children."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == parent and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found


@contextlib.contextmanager
def hydractl_up(tmp_path: Path) -> Iterator[Up]:
    """`hydractl up` as an operator runs it, on the embedded defaults; SIGTERM on exit."""
    env = stack_env(tmp_path / "data")
    migrate_all(env)
    output = (tmp_path / "up.out").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "hydractl", "up"], env=env, stdout=output, stderr=subprocess.STDOUT
    )
    up = Up(process, env, f"http://127.0.0.1:{env['HYDRA_EDGE_PORT']}")
    try:
        deadline = time.monotonic() + 90
        while b"Hydra is up" not in (tmp_path / "up.out").read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, "hydractl up did not come up"
            time.sleep(0.2)
        yield up
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        output.close()


def first_failure(writes: Writes, since: float) -> float:
    """When the first request answered after `since` failed (infinity while none has)."""
    return min((t for t, s, _ in writes.answers if t > since and s != 201), default=float("inf"))


def test_sigkill_of_crm_under_load_is_survived_and_loses_no_answered_write(tmp_path: Path) -> None:
    with hydractl_up(tmp_path) as up:
        key = mint(
            up.env,
            tenant=create_tenant(up.env, "steady"),
            scopes=["crm:read", "crm:write"],
            rate_limit=100_000,
        )
        writes = Writes(up.url, {"Authorization": f"Bearer {key['key']}"})
        with writes.running():
            time.sleep(2)
            crm = up.pid("crm")
            killed_at = time.monotonic()
            os.kill(crm, signal.SIGKILL)
            up.pid("crm", other_than=crm)
            deadline = time.monotonic() + 30
            # Answered after the first failure: a request crm answered just before it died can
            # complete after killed_at, and does not show that the restarted crm answers.
            while not any(t > first_failure(writes, killed_at) and s == 201 for t, s, _ in writes.answers):
                assert time.monotonic() < deadline, (
                    f"crm never answered again: {writes.answers[-5:]}\n{up.log}"
                )
                time.sleep(0.1)
            time.sleep(2)  # and it keeps answering
        assert up.process.poll() is None, "hydractl up stopped the stack"
        assert "crm exited with status -9" in up.log and "restarted crm" in up.log

        statuses = {s for _, s, _ in writes.answers}
        assert statuses <= {201, 503}, statuses  # never a 500, never refused
        failed = [t for t, s, _ in writes.answers if s != 201]
        assert failed, "the kill went unnoticed: the test proves nothing"
        recovered = min(t for t, s, _ in writes.answers if t > first_failure(writes, killed_at) and s == 201)
        assert all(killed_at <= t <= recovered for t in failed), "requests failed outside the restart"
        assert recovered - killed_at < 20

        lost = writes.lost()
        assert not lost, f"{len(lost)} of {len(writes.created())} answered writes lost"


def _healthy(url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    return False


def test_envoy_is_restarted_too(tmp_path: Path) -> None:
    with hydractl_up(tmp_path) as up:
        envoy = up.pid("envoy")
        os.kill(envoy, signal.SIGKILL)
        up.pid("envoy", other_than=envoy)
        deadline = time.monotonic() + 30
        while not _healthy(up.url):
            assert time.monotonic() < deadline, f"the edge never came back:\n{up.log}"
            time.sleep(0.2)
        assert up.process.poll() is None


def test_a_process_that_keeps_crashing_is_given_up_and_the_stack_stopped(tmp_path: Path) -> None:
    with hydractl_up(tmp_path) as up:
        pid = 0
        while up.process.poll() is None:
            with contextlib.suppress(AssertionError):
                pid = up.pid("tickets", other_than=pid, timeout=5)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        assert up.process.wait(60) == 1
        assert "giving up" in up.log
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{up.url}/healthz", timeout=2)
