"""What observability costs: the same requests through the full edge with both metrics and tracing off,
with metrics on (tracing off, the default), and with both on (spans exported to a local OTLP receiver),
1 % of requests sampled and all of them.

Prints figures; never passes or fails on them. `python -m bench.observability [--duration 8] [--rounds 2]`.
Each configuration is a fresh stack on the same PostgreSQL and Redis; the configurations alternate round
by round, every other round in reverse order, so a drift of the machine's speed falls on all of them
alike. CPU is the stack's processes' own (Envoy and the Python servers), per request.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
from collections.abc import Mapping

from bench.edge import cpu_seconds, seeded_cases, settle, wrk
from bench.stack import bench_stack, host_speed, host_speed_line
from testbed.otlp import OtlpReceiver

CASES = ("GET /api/v1/leads/{id}", "POST /api/v1/leads")


def configurations(receiver: OtlpReceiver) -> dict[str, Mapping[str, str]]:
    return {
        "both off": {"HYDRA_METRICS": "off"},
        "metrics on, tracing off": {"HYDRA_METRICS": "on"},
        "metrics, tracing 1 %": {
            "HYDRA_METRICS": "on",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
            "OTEL_TRACES_SAMPLER_ARG": "0.01",
        },
        "metrics, tracing all": {"HYDRA_METRICS": "on", "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint},
    }


def measure(env_extra: Mapping[str, str], args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """req/s and the stack's CPU milliseconds per request, by case, on a fresh stack."""
    figures: dict[str, tuple[float, float]] = {}
    with bench_stack(HYDRA_EDGE_TRUSTED_HOPS="1", **env_extra) as (stack, env):
        key, cases = seeded_cases(env, stack.edge_url)
        for case in (c for c in cases if c.name in CASES):
            settle(stack.processes)
            before = cpu_seconds(stack.processes)
            result = wrk(case.url, key, duration=args.duration, connections=args.connections, body=case.body)
            spent = cpu_seconds(stack.processes)
            own = sum(spent[p] - before[p] for p in stack.processes)
            figures[case.name] = (result["rps"], own * 1000 / (result["rps"] * args.duration))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    speed_before = host_speed()
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with OtlpReceiver() as receiver:
        configs = configurations(receiver)
        print(
            f"\n{args.connections} connections, {args.duration}s per case, {args.rounds} rounds alternating\n"
        )
        print(f"{'round':<7}{'configuration':<26}{'case':<26}{'req/s':>9}{'CPU ms/req':>12}")
        for round_ in range(1, args.rounds + 1):
            # Every other round in reverse: no configuration always runs first (a fresh server's warm-up).
            order = list(configs) if round_ % 2 else list(reversed(configs))
            for name in order:
                for case, (rps, cpu) in measure(configs[name], args).items():
                    runs.setdefault((name, case), []).append((rps, cpu))
                    print(f"{round_:<7}{name:<26}{case:<26}{rps:>9.0f}{cpu:>12.2f}", flush=True)
    print("\nMedian of the rounds, against both off")
    print(f"{'configuration':<26}{'case':<26}{'req/s':>9}{'ratio':>8}{'CPU ms/req':>12}{'ratio':>8}")
    for case in CASES:
        base_rps = statistics.median(r for r, _ in runs[("both off", case)])
        base_cpu = statistics.median(c for _, c in runs[("both off", case)])
        for name in configs:
            rps = statistics.median(r for r, _ in runs[(name, case)])
            cpu = statistics.median(c for _, c in runs[(name, case)])
            print(f"{name:<26}{case:<26}{rps:>9.0f}{rps / base_rps:>8.2f}{cpu:>12.2f}{cpu / base_cpu:>8.2f}")
    print(f"\n{host_speed_line(speed_before)}")


if __name__ == "__main__":
    main()
