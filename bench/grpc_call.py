"""What one bare grpc.aio unary call costs a server and its caller, at a fixed call rate.

Prints figures; never passes or fails on them. `python -m bench.grpc_call [--rate 500] [--duration 10]`.
Every Hydra request crosses several Python gRPC hops, so this per-call floor, which depends on the
installed grpcio release and its GRPC_EXPERIMENTS, is paid several times per request. The server runs
on the services' own runtime (uvloop, frozen start-up objects); calls are paced, not back to back,
as in production, so each one wakes the server on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.edge import proc_stat
from services.common.grpc_server import run
from testbed.servers import free_port


class _Healthy(health_pb2_grpc.HealthServicer):
    """Answers every Check at once: the call itself is all that is measured."""

    async def Check(self, request: health_pb2.HealthCheckRequest, context: object) -> object:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def _serve(port: int) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(_Healthy(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _cpu_seconds(pid: int) -> float:
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of all the process's threads so far."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        for line in status.read_text().splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split()[1])
    return total


async def _paced_calls(port: int, server_pid: int, rate: int, duration: float) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        request = health_pb2.HealthCheckRequest()
        await check(request, wait_for_ready=True)
        calls = int(rate * duration)
        server_cpu, switches = _cpu_seconds(server_pid), _context_switches(server_pid)
        own_cpu = time.process_time()
        started = time.perf_counter()
        pending = []
        for n in range(calls):
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.ensure_future(check(request)))
        await asyncio.gather(*pending)
        server_ms = (_cpu_seconds(server_pid) - server_cpu) * 1000 / calls
        switches_per_call = (_context_switches(server_pid) - switches) / calls
        caller_ms = (time.process_time() - own_cpu) * 1000 / calls
    experiments = os.environ.get("GRPC_EXPERIMENTS", "(defaults)")
    print(f"grpcio {grpc.__version__}, GRPC_EXPERIMENTS {experiments}, {rate} calls/s for {duration:g}s")
    print(f"server: {server_ms:.3f} ms CPU and {switches_per_call:.1f} context switches per call")
    print(f"caller: {caller_ms:.3f} ms CPU per call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500, help="calls per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of calls")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run(_serve(args.serve))
        return
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.grpc_call", "--serve", str(port)])
    try:
        asyncio.run(_paced_calls(port, server.pid, args.rate, args.duration))
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
