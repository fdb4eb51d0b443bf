"""Throughput and latency through the full edge (Envoy, gatekeeper, services; PostgreSQL + Redis), with wrk.

Prints figures; never passes or fails on them. `python -m bench.edge [--duration 15] [--connections 32]
[--rate R] [--profile DIR] [--metrics on|off]` (--profile records py-spy flame graphs of the gatekeeper and
crm during each run; --metrics off runs every process without its Prometheus metrics). wrk keeps
--connections busy and reports the most the stack can do; --rate R offers R requests per second instead
(bench/paced.py) and reports the latency at that load.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.paced import paced
from bench.stack import bench_stack, host_speed, host_speed_line
from hydractl.cli import create_tenant, mint

HERE = Path(__file__).resolve().parent
_LATENCY = re.compile(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_ERRORS = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_SCALE = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class Case:
    """One benchmarked request: GET `url`, or POST `body` ({n} numbered) with `key`, from `clients` IPs."""

    name: str
    url: str
    body: str | None = None
    key: str | None = None  # the Support key when None
    clients: int = 0  # >0: spread requests over this many forwarded client addresses
    connections: int = 0  # >0: this many connections instead of --connections
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (wrk only)
    idempotent: bool = False  # each POST with an Idempotency-Key of its own (wrk only)


def wrk(
    url: str,
    key: str,
    *,
    duration: int,
    connections: int,
    body: str | None = None,
    clients: int = 0,
    headers: Mapping[str, str] | None = None,
    tokens: Sequence[str] = (),
    idempotent: bool = False,
) -> dict[str, float]:
    """Runs wrk once (POSTing `body` when given; with `tokens`, GETs sent as each of them in turn instead
    of `key`); returns req/s, p50/p90/p99 in ms, and non-2xx answers."""
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if not tokens:
        argv += ["-H", f"Authorization: Bearer {key}"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    env = dict(os.environ)
    if tokens:
        argv += ["-s", str(HERE / "tokens.lua")]
        env["BENCH_TOKENS"] = ",".join(tokens)
    elif body is not None:
        argv += ["-s", str(HERE / "post_json.lua")]
        env["BENCH_BODY"] = body
        env["BENCH_CLIENTS"] = str(clients)
        if idempotent:
            env["BENCH_IDEMPOTENCY"] = f"bench-{time.time_ns()}"
    out = subprocess.run([*argv, url], capture_output=True, text=True, check=True, env=env).stdout
    figures = {f"p{p}": float(v) * _SCALE[unit] for p, v, unit in _LATENCY.findall(out)}
    figures["rps"] = float(_RATE.search(out).group(1))  # type: ignore[union-attr]
    errors = _ERRORS.search(out)
    figures["non_2xx"] = float(errors.group(1)) if errors else 0.0
    return figures


def proc_stat(pid: int | str) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state is [0], utime [11], cutime [13])."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(processes: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU seconds used so far by each stack process, and by all postgres and redis-server processes
    (postgres including exited backends, counted on the postmaster: approximate when backends come and go)."""
    ticks = os.sysconf("SC_CLK_TCK")
    spent = {name: 0.0 for name in [*processes, "postgres", "redis"]}
    for name, process in processes.items():
        fields = proc_stat(process.pid)
        spent[name] = (int(fields[11]) + int(fields[12])) / ticks
    for proc in Path("/proc").iterdir():
        try:
            comm = (proc / "comm").read_text().strip()
            fields = proc_stat(proc.name) if comm in ("postgres", "redis-server") else None
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
            continue
        if fields is None:
            continue
        used = int(fields[11]) + int(fields[12])
        if comm == "postgres" and (Path(f"/proc/{fields[1]}/comm").read_text().strip() != "postgres"):
            used += int(fields[13]) + int(fields[14])
        spent["postgres" if comm == "postgres" else "redis"] += used / ticks
    return spent


def settle(processes: dict[str, subprocess.Popen[bytes]], timeout: float = 60.0) -> None:
    """Waits until the stack is idle, so work left over from one case (event consumers, email) does
    not run during the next one."""
    deadline = time.monotonic() + timeout
    before = sum(cpu_seconds(processes).values())
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = sum(cpu_seconds(processes).values())
        if now - before < 0.05:  # under 10% of one core
            return
        before = now


CASE_HEADER = f"{'case':<44}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'non-2xx':>9}"


def measured(
    processes: dict[str, subprocess.Popen[bytes]], run: Callable[[], dict[str, float]], duration: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Runs one case on the settled stack: its figures, and each process's CPU milliseconds per request."""
    settle(processes)
    before = cpu_seconds(processes)
    figures = run()
    spent = cpu_seconds(processes)
    requests = max(1.0, figures["rps"] * duration)
    return figures, {p: (spent[p] - before[p]) * 1000 / requests for p in spent}


def case_line(name: str, figures: dict[str, float], cpu: dict[str, float], busiest: int = 3) -> str:
    """One case's row under CASE_HEADER, with the processes that spent most CPU per request."""
    top = ", ".join(f"{p} {ms:.2f}" for p, ms in sorted(cpu.items(), key=lambda x: -x[1])[:busiest])
    return (
        f"{name:<44}{figures['rps']:>10.0f}{figures['p50']:>9.1f}{figures['p90']:>9.1f}"
        f"{figures['p99']:>9.1f}{figures['non_2xx']:>9.0f}   cpu ms/req: {top}"
    )


def profile(pid: int, out: Path, duration: int) -> subprocess.Popen[bytes] | None:
    """Starts py-spy on a process for the run, if py-spy is installed."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        return None
    return subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(duration),
            "-o",
            str(out),
            "-f",
            "speedscope",
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def seeded_cases(env: dict[str, str], base: str) -> tuple[str, list[Case]]:
    """Seeds a tenant with the records the cases read and write; its CRM key and the cases."""
    tenant = create_tenant(env, "bench")
    key = mint(
        env,
        tenant=tenant,
        rate_limit=1_000_000_000,
        scopes=["crm:read", "crm:write", "tickets:read", "tickets:write"],
    )["key"]
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
        lead = [http.post("/api/v1/leads", json={"name": f"seed {i}"}).json()["lead"] for i in range(200)][
            100
        ]
        account = http.post("/api/v1/accounts", json={"name": "Bench Inc"}).json()["account"]
        contact = http.post(
            "/api/v1/contacts", json={"email": "bench@example.com", "account_id": account["id"]}
        ).json()["contact"]
        ticket = http.post("/api/v1/tickets", json={"title": "seed", "customer_id": contact["id"]}).json()
    core_key = mint(
        env,
        tenant=tenant,
        kind="hc_live",
        rate_limit=1_000_000_000,
        scopes=["instances:read", "instances:write", "sites:write"],
    )["key"]
    instance = httpx.post(
        f"{base}/v1/instances", json={"name": "Bench bot"}, headers={"X-Api-Key": core_key}
    ).json()
    site = httpx.post(f"{base}/v1/sites", json={"name": "Bench site"}, headers={"X-Api-Key": core_key}).json()
    lead_url = f"{base}/api/v1/leads/{lead['id']}"
    version = httpx.get(lead_url, headers={"Authorization": f"Bearer {key}"}).headers["etag"]
    unchanged = httpx.get(lead_url, headers={"Authorization": f"Bearer {key}", "If-None-Match": version})
    assert unchanged.status_code == 304, unchanged  # wrk counts only 4xx and 5xx as errors
    cases = [
        Case("GET /api/v1/leads/{id}", lead_url),
        # The same read, answered 304 without a body: what a client that keeps ETags pays.
        Case("GET /api/v1/leads/{id} (If-None-Match: 304)", lead_url, headers=(("If-None-Match", version),)),
        Case("GET /api/v1/leads (25)", f"{base}/api/v1/leads"),
        Case(
            "POST /api/v1/leads",
            f"{base}/api/v1/leads",
            '{"email": "b{n}@example.com", "name": "B {n}"}',
        ),
        # The same create, each with a key of its own: what a client that retries safely pays.
        Case(
            "POST /api/v1/leads (Idempotency-Key)",
            f"{base}/api/v1/leads",
            '{"email": "i{n}@example.com", "name": "I {n}"}',
            idempotent=True,
        ),
        Case("GET /api/v1/contacts/{id}", f"{base}/api/v1/contacts/{contact['id']}"),
        Case(
            "POST /api/v1/contacts",
            f"{base}/api/v1/contacts",
            f'{{"email": "c{{n}}@example.com", "account_id": "{account["id"]}"}}',
        ),
        Case("GET /api/v1/tickets/{id}", f"{base}/api/v1/tickets/{ticket['ticket']['id']}"),
        Case("POST /api/v1/tickets (no customer)", f"{base}/api/v1/tickets", '{"title": "T {n}"}'),
        Case(
            "POST /api/v1/tickets",
            f"{base}/api/v1/tickets",
            f'{{"title": "T {{n}}", "customer_id": "{contact["id"]}"}}',
        ),
        Case("GET /v1/instances/{id}", f"{base}/v1/instances/{instance['id']}", key=core_key),
        Case(
            "POST /v1/instances/{id}/channels",
            f"{base}/v1/instances/{instance['id']}/channels",
            '{"channel_type": "sms", "provider": "twilio", "external_identifier": "+1555{n}"}',
            key=core_key,
        ),
        *(
            Case(
                f"POST /v1/public/analytics/track{label}",
                f"{base}/v1/public/analytics/track",
                f'{{"site_id": "{site["tracking_token"]}", "page_path": "/p/{{n}}", "session_id": "s"}}',
                clients=50_000,
                connections=connections,
            )
            # Page views come from many visitors at once: also measured with more connections.
            for label, connections in (("", 0), (" @128", 128))
        ),
    ]
    return key, cases


def load(case: Case, key: str, args: argparse.Namespace) -> dict[str, float]:
    """Runs one case: at a fixed offered rate (--rate), else with wrk's busy connections."""
    if args.rate:
        return paced(
            case.url, key, rate=args.rate, duration=args.duration, body=case.body, clients=case.clients
        )
    return wrk(
        case.url,
        key,
        duration=args.duration,
        connections=case.connections or args.connections,
        body=case.body,
        clients=case.clients,
        headers=dict(case.headers),
        idempotent=case.idempotent,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--rate",
        type=float,
        help="open loop: offer this many requests per second (latency from each one's due time), not wrk",
    )
    parser.add_argument("--profile", type=Path, help="write py-spy profiles here")
    parser.add_argument("--envoy-concurrency", default="1", help="Envoy worker threads")
    parser.add_argument("--replicas", default="", help="processes per server, e.g. crm=2 (HYDRA_REPLICAS)")
    parser.add_argument(
        "--case", action="append", help="run only cases whose name contains this (repeatable)"
    )
    parser.add_argument(
        "--log-level", default="INFO", help="services' log level (INFO logs a line per request)"
    )
    parser.add_argument(
        "--metrics", choices=("on", "off"), default="on", help="Prometheus metrics (HYDRA_METRICS)"
    )
    args = parser.parse_args()
    if not args.rate and not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")

    speed_before = host_speed()
    with bench_stack(
        HYDRA_LOG_LEVEL=args.log_level,
        HYDRA_ENVOY_CONCURRENCY=args.envoy_concurrency,
        HYDRA_REPLICAS=args.replicas,
        HYDRA_METRICS=args.metrics,
        # Page views arrive from many visitors; here they come through one trusted hop (wrk).
        HYDRA_EDGE_TRUSTED_HOPS="1",
    ) as (stack, env):
        key, cases = seeded_cases(env, stack.edge_url)
        offered = (
            f"{args.rate:g} req/s offered (open loop)" if args.rate else f"{args.connections} connections"
        )
        print(
            f"\n{offered}, {args.duration}s each, PostgreSQL + Redis "
            f"(no fsync, nor for mail; consumers in delivery processes), log level {args.log_level}, "
            f"{args.envoy_concurrency} Envoy worker(s), replicas: {args.replicas or 'one of each'}, "
            f"metrics {args.metrics}\n"
        )
        # Open loop: how late the generator itself was at worst (well under p99, or the figures are its own).
        late_column = f"{'sent late ms':>14}" if args.rate else ""
        print(f"{'case':<36}{'req/s':>10}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'non-2xx':>9}{late_column}")
        if args.case:
            cases = [c for c in cases if any(f in c.name for f in args.case)]
        shares: list[tuple[str, dict[str, float]]] = []
        for case in cases:
            name = case.name
            settle(stack.processes)
            spies = []
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                slug = re.sub(r"\W+", "_", name).strip("_")
                for proc in ("gatekeeper", "crm", "tickets", "public"):
                    spy = profile(
                        stack.processes[proc].pid, args.profile / f"{slug}.{proc}.txt", args.duration
                    )
                    if spy:
                        spies.append(spy)
            before = cpu_seconds(stack.processes)
            f = load(case, case.key or key, args)
            spent = cpu_seconds(stack.processes)
            requests = f["rps"] * args.duration
            shares.append((name, {p: (spent[p] - before[p]) * 1000 / requests for p in spent}))
            for spy in spies:
                spy.wait()
            print(
                f"{name:<36}{f['rps']:>10.0f}{f['p50']:>9.1f}{f['p90']:>9.1f}{f['p99']:>9.1f}"
                f"{f['non_2xx']:>9.0f}" + (f"{f['late_max']:>14.1f}" if args.rate else ""),
                flush=True,
            )
        generator = "the load generator" if args.rate else "wrk"
        print(f"\nCPU milliseconds per request, by process ({generator} not counted)")
        widths = {n: max(11, len(n) + 2) for n in [*stack.processes, "postgres", "redis"]}
        print(f"{'case':<36}" + "".join(f"{n:>{w}}" for n, w in widths.items()))
        for name, share in shares:
            print(f"{name:<36}" + "".join(f"{share[n]:>{w}.2f}" for n, w in widths.items()))
    print(f"\n{host_speed_line(speed_before)}")


if __name__ == "__main__":
    main()
