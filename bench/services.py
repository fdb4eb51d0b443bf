"""CPU per call of the services themselves, called over gRPC without the edge (PostgreSQL + Redis).

Prints figures; never passes or fails on them. `python -m bench.services [--calls 6000] [--concurrency 16]
[--env NAME=VALUE ...]`.
Separates what a service costs from what Envoy and the gatekeeper add: crm's GetContact (the lookup
tickets makes), CreateTicket without a customer, and CreateTicket with one (the crm lookup and the
confirmation email it causes).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import httpx
from hydra.crm.v1 import contacts_pb2, contacts_pb2_grpc
from hydra.tickets.v1 import tickets_pb2, tickets_pb2_grpc

from bench.edge import cpu_seconds, settle
from bench.stack import bench_stack, host_speed, host_speed_line
from hydractl.cli import create_tenant, mint
from services.common.channels import internal_metadata


async def drive(call: Callable[[int], Awaitable[Any]], calls: int, concurrency: int) -> float:
    """Makes `calls` calls from `concurrency` concurrent callers; returns calls per second."""

    async def caller(first: int) -> None:
        for n in range(first, calls, concurrency):
            await call(n)

    await call(-1)  # connect and warm up outside the timing
    started = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return calls / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for every process (repeatable), e.g. OTEL_*"
    )
    args = parser.parse_args()

    speed_before = host_speed()
    with bench_stack(**dict(pair.split("=", 1) for pair in args.env)) as (stack, env):
        tenant = create_tenant(env, "bench")
        key = mint(env, tenant=tenant, rate_limit=1_000_000_000, scopes=["crm:read", "crm:write"])["key"]
        with httpx.Client(base_url=stack.edge_url, headers={"Authorization": f"Bearer {key}"}) as http:
            account = http.post("/api/v1/accounts", json={"name": "Bench Inc"}).json()["account"]
            contact = http.post(
                "/api/v1/contacts", json={"email": "bench@example.com", "account_id": account["id"]}
            ).json()["contact"]
        crm_metadata = internal_metadata(tenant, ["crm:read"], key_id="bench")
        tickets_metadata = internal_metadata(tenant, ["tickets:write"], key_id="bench")

        async def get_contact() -> float:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{env['HYDRA_CRM_PORT']}") as channel:
                contacts = contacts_pb2_grpc.ContactServiceStub(channel)
                request = contacts_pb2.GetContactRequest(id=contact["id"])
                return await drive(
                    lambda _n: contacts.GetContact(request, metadata=crm_metadata),
                    args.calls,
                    args.concurrency,
                )

        async def create_ticket(customer: bool) -> float:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{env['HYDRA_TICKETS_PORT']}") as channel:
                tickets = tickets_pb2_grpc.TicketServiceStub(channel)

                def request(n: int) -> tickets_pb2.CreateTicketRequest:
                    message = tickets_pb2.CreateTicketRequest()
                    message.ticket.update(
                        {"title": f"T {n}", **({"customer_id": contact["id"]} if customer else {})}
                    )
                    return message

                return await drive(
                    lambda n: tickets.CreateTicket(request(n), metadata=tickets_metadata),
                    args.calls,
                    args.concurrency,
                )

        cases: list[tuple[str, Callable[[], Awaitable[float]]]] = [
            ("crm GetContact", get_contact),
            ("tickets CreateTicket (no customer)", lambda: create_ticket(False)),
            ("tickets CreateTicket (customer)", lambda: create_ticket(True)),
        ]
        names = ["crm", "tickets", "postgres", "redis"]
        print(f"\n{args.calls} calls each from {args.concurrency} concurrent callers, no edge\n")
        print(f"{'case':<38}{'calls/s':>9}" + "".join(f"{n + ' us':>13}" for n in names))
        for label, run in cases:
            settle(stack.processes)
            before = cpu_seconds(stack.processes)
            rate = asyncio.run(run())
            settle(stack.processes)  # the email consumer finishes the case's events before the reading
            spent = cpu_seconds(stack.processes)
            per_call = {n: (spent[n] - before[n]) * 1e6 / args.calls for n in names}
            print(f"{label:<38}{rate:>9.0f}" + "".join(f"{per_call[n]:>13.0f}" for n in names), flush=True)
    print("\nCPU microseconds per call, by process (the bench's own client not counted)")
    print(host_speed_line(speed_before))


if __name__ == "__main__":
    main()
