"""Widget chat time-to-first-event and time-to-done through the full edge, with the default knowledge agent.

Prints figures; never passes or fails on them. `python -m bench.widget [--chats 200] [--concurrency 1,8]`
(PostgreSQL + Redis). Each chat opens a conversation, so every turn pays for the whole path: token check
(with the per-IP and per-instance windows), instance lookup, conversation and message writes in crm,
retrieval, reply storage and tagging. Each chat comes from its own visitor address (one trusted hop,
X-Forwarded-For), as on a real site; the instance's own window (1200 messages a minute) still applies.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from bench.stack import bench_stack, host_speed, host_speed_line
from hydractl.cli import create_tenant, mint

QUESTIONS = [
    "How long do refunds take?",
    "When will my order ship?",
    "Can I change my delivery address?",
    "Do you ship to Canada?",
]


def knowledge(entries: int) -> list[dict[str, str]]:
    """A knowledge base of `entries` entries, a few of them answering the benchmark's questions."""
    base = [
        {"title": "Refund policy", "content": "Refunds are issued within 14 days to the original card."},
        {"title": "Shipping times", "content": "Orders ship within two business days from Berlin."},
        {"title": "Delivery address", "content": "You can change the address until the order ships."},
        {"title": "International shipping", "content": "We ship to Canada, the US and all of the EU."},
    ]
    filler = [
        {"title": f"Product {i} care", "content": f"Product {i} should be cleaned with a dry cloth weekly."}
        for i in range(entries - len(base))
    ]
    return base + filler


async def one_chat(
    client: httpx.AsyncClient, path: str, token: str, question: str, visitor: int
) -> tuple[float, float]:
    """(seconds to the first event, seconds to the done event) of one chat turn."""
    started = time.perf_counter()
    first = None
    address = f"10.{visitor >> 16 & 255}.{visitor >> 8 & 255}.{visitor & 255}"
    headers = {"X-Widget-Token": token, "X-Forwarded-For": address}
    async with client.stream("POST", path, json={"message": question}, headers=headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if first is None and line.startswith("event:"):
                first = time.perf_counter() - started
            if line.startswith("event: done") or line.startswith("event: error"):
                break
    return first or float("nan"), time.perf_counter() - started


async def run(base: str, path: str, token: str, *, chats: int, concurrency: int) -> list[tuple[float, float]]:
    results: list[tuple[float, float]] = []
    queue = list(range(chats))
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        await one_chat(client, path, token, QUESTIONS[0], 0)  # warm the connection and the index

        async def worker() -> None:
            while queue:
                n = queue.pop()
                results.append(await one_chat(client, path, token, QUESTIONS[n % len(QUESTIONS)], n + 1))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--concurrency", default="1,8", help="comma-separated concurrent visitors")
    parser.add_argument("--entries", type=int, default=200, help="knowledge entries of the instance")
    args = parser.parse_args()
    speed_before = host_speed()
    visitors = [int(c) for c in args.concurrency.split(",")]
    with bench_stack(
        HYDRA_EDGE_TRUSTED_HOPS="1",
        # All visitors talk to one instance; a finished stream's slot is freed a moment after its
        # visitor read `done`, so a cap of exactly the visitors would refuse some back-to-back chats.
        HYDRA_WIDGET_STREAMS_PER_INSTANCE=str(2 * max(8, *visitors)),
    ) as (stack, env):
        tenant = create_tenant(env, "bench")
        core = mint(env, tenant=tenant, kind="hc_live", scopes=["instances:write"])["key"]
        instance = httpx.post(
            f"{stack.edge_url}/v1/instances",
            json={"name": "Bench bot", "knowledge": knowledge(args.entries)},
            headers={"X-Api-Key": core},
        ).json()
        token = mint(
            env, tenant=tenant, kind="widget", scopes=[], instance=instance["id"], rate_limit=1_000_000
        )["key"]
        path = f"/v1/public/widget/{instance['id']}/chat"
        print(f"\n{args.chats} chats per row; knowledge agent, {args.entries} entries; PostgreSQL + Redis\n")
        columns = ("visitors", "chats/s", "first p50", "first p90", "first p99", "done p50", "done p99")
        print("".join(f"{c:>11}" for c in columns))
        for concurrency in visitors:
            started = time.perf_counter()
            results = asyncio.run(run(stack.edge_url, path, token, chats=args.chats, concurrency=concurrency))
            elapsed = time.perf_counter() - started
            first = [r[0] for r in results]
            done = [r[1] for r in results]
            row = [
                f"{concurrency}",
                f"{len(results) / elapsed:.1f}",
                *(f"{pct(first, q):.1f}" for q in (0.5, 0.9, 0.99)),
                f"{statistics.median(done) * 1000:.1f}",
                f"{pct(done, 0.99):.1f}",
            ]
            print("".join(f"{v:>11}" for v in row), flush=True)
        print("\n(ms; 'first' = time to the first SSE event, 'done' = to the done event)")
    print(host_speed_line(speed_before))


if __name__ == "__main__":
    main()
