"""CPU per ext_authz check in the gatekeeper, with wrk straight at its check listener (PostgreSQL + Redis).

Prints figures; never passes or fails on them. `python -m bench.checks [--rounds 6] [--duration 3]`.
Every keyed request through the edge costs one such check; this isolates it from Envoy and the services.
Each round prints req/s and the gatekeeper's and Redis's CPU microseconds per check; the least and the
median round are summed up at the end (a shared host only ever adds time).
"""

from __future__ import annotations

import argparse
import statistics

from bench.edge import cpu_seconds, wrk
from bench.stack import bench_stack, host_speed, host_speed_line
from edge.bindings import load_bindings
from edge.envoy_config import route_headers
from hydractl.cli import create_tenant, mint


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()

    speed_before = host_speed()
    with bench_stack() as (stack, env):
        key = mint(
            env, tenant=create_tenant(env, "bench"), rate_limit=1_000_000_000, scopes=["tickets:write"]
        )
        url = f"http://127.0.0.1:{env['HYDRA_AUTHZ_PORT']}/api/v1/tickets"
        # The policy headers Envoy adds to the check of POST /api/v1/tickets, as the edge config makes them.
        (create,) = [b for b in load_bindings() if b.rpc.endswith(".CreateTicket")]
        route = route_headers(create)
        spent = []
        print(f"{'round':>5} {'checks/s':>9} {'p99 ms':>7} {'gatekeeper µs':>14} {'redis µs':>9}")
        for round_number in range(1, args.rounds + 1):
            before = cpu_seconds(stack.processes)
            figures = wrk(
                url, key["key"], duration=args.duration, connections=args.connections, headers=route
            )
            after = cpu_seconds(stack.processes)
            checks = figures["rps"] * args.duration
            if figures["non_2xx"]:
                raise SystemExit(f"{figures['non_2xx']:.0f} checks were refused: the figures mean nothing")
            gatekeeper = (after["gatekeeper"] - before["gatekeeper"]) * 1e6 / checks
            redis = (after["redis"] - before["redis"]) * 1e6 / checks
            spent.append(gatekeeper)
            rate, p99 = figures["rps"], figures["p99"]
            print(f"{round_number:>5} {rate:>9.0f} {p99:>7.2f} {gatekeeper:>14.0f} {redis:>9.0f}")
        print(
            f"gatekeeper CPU per check: least {min(spent):.0f} µs, median {statistics.median(spent):.0f} µs"
        )
    print(host_speed_line(speed_before))


if __name__ == "__main__":
    main()
