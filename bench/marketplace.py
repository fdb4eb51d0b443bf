"""The workflow marketplace under load: GET /v1/workflows and marketplace search with 10,000 public
workflows in the table, beside GET /api/v1/leads?limit=25 in the same run (PostgreSQL + Redis, wrk).

Prints figures; never passes or fails on them. `python -m bench.marketplace [--duration 15]
[--connections 32] [--workflows 10000]`. Requests rotate over many users' ID tokens, so the figures
are the stack's, not one user's plan limit.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import sys
import uuid
from pathlib import Path

import httpx

from bench.edge import CASE_HEADER, case_line, measured, wrk
from bench.stack import bench_stack, host_speed, host_speed_line
from hydractl.cli import create_tenant, create_user, id_token, mint, parser
from services.common.db import Database
from services.workflows.paging import Pager
from services.workflows.workflows import WorkflowService

HERE = Path(__file__).resolve().parent
OWNERS = 100
WORDS = ["review", "bug", "fix", "test", "deploy", "docs", "refactor", "lint", "security", "release"]


def workflow_fields(index: int) -> dict[str, object]:
    """A public workflow whose words come from WORDS at different frequencies (word k in 1/(k+1))."""
    words = [w for k, w in enumerate(WORDS) if index % (k + 1) == 0]
    name = f"{' '.join(words[-2:]).title()} flow {index}"
    return {
        "name": name[:100],
        "description": f"Helps with {' and '.join(words)} on repository {index}.",
        "manifest": {
            "manifest_version": "1.0",
            "name": name[:100],
            "steps": [
                {"id": f"s{k}", "name": w, "instructions": f"Do the {w} step."} for k, w in enumerate(words)
            ],
        },
        "visibility": "public",
        "category": WORDS[index % len(WORDS)],
        "tags": words[:5],
    }


async def seed_workflows(env: dict[str, str], owners: list[uuid.UUID], count: int) -> None:
    """`count` public workflows through the service's own create (schema check, versions, library)."""
    db = Database(env["HYDRA_WORKFLOWS_DATABASE_URL"], schema="workflows", pool_size=8)
    service = WorkflowService(db, Pager(b"bench"))
    limit = asyncio.Semaphore(8)

    async def one(index: int) -> None:
        async with limit:
            await service.create(owners[index % len(owners)], workflow_fields(index))

    await asyncio.gather(*(one(i) for i in range(count)))
    await db.dispose()


def main() -> None:
    arguments = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    arguments.add_argument("--duration", type=int, default=15)
    arguments.add_argument("--connections", type=int, default=32)
    arguments.add_argument("--workflows", type=int, default=10_000)
    args = arguments.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    speed_before = host_speed()
    with bench_stack() as (stack, env):
        base = stack.edge_url
        users = [create_user(env, f"owner{i}@bench.example") for i in range(OWNERS)]
        for user in users:
            set_plan = parser().parse_args(["users", "set-plan", user["email"], "enterprise"])
            set_plan.handler(set_plan, env)
        tokens = [id_token(env, user["email"], dt.timedelta(hours=2)) for user in users]
        started = dt.datetime.now()
        asyncio.run(seed_workflows(env, [uuid.UUID(u["user_id"]) for u in users], args.workflows))
        seeded = (dt.datetime.now() - started).total_seconds()
        key = mint(
            env,
            tenant=create_tenant(env, "bench"),
            rate_limit=1_000_000_000,
            scopes=["crm:read", "crm:write"],
        )["key"]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as http:
            for i in range(200):
                http.post("/api/v1/leads", json={"name": f"seed {i}"})
        print(
            f"\n{args.workflows} public workflows of {OWNERS} users (seeded in {seeded:.0f} s); "
            f"'review' is in every 1st, 'security' every 9th, 'lint' every 8th; {args.connections} "
            f"connections, {args.duration}s each, PostgreSQL + Redis\n"
        )
        print(CASE_HEADER)
        cases = [
            ("GET /api/v1/leads?limit=25", f"{base}/api/v1/leads?limit=25", None),
            ("GET /v1/workflows (20 of 100 own)", f"{base}/v1/workflows", tokens),
            ("GET /v1/marketplace/search?q=review", f"{base}/v1/marketplace/search?q=review", tokens),
            (
                "GET /v1/marketplace/search?q=security+lint",
                f"{base}/v1/marketplace/search?q=security+lint",
                tokens,
            ),
            ("GET /v1/marketplace?sort=popular", f"{base}/v1/marketplace?sort=popular", tokens),
        ]
        for name, url, users_tokens in cases:
            figures, cpu = measured(
                stack.processes,
                lambda url=url, users_tokens=users_tokens: wrk(
                    url, key, duration=args.duration, connections=args.connections, tokens=users_tokens or ()
                ),
                args.duration,
            )
            print(case_line(name, figures, cpu), flush=True)
    print(f"\n{host_speed_line(speed_before)}")


if __name__ == "__main__":
    main()
