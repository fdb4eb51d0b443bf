"""MCP tool calls through the edge beside the HTTP routes they stand for, in the same run (PostgreSQL +
Redis, wrk): `tools/call get_lead` vs `GET /api/v1/leads/{id}`, and `tools/call list_leads` vs
`GET /api/v1/leads?limit=25`.

Prints figures; never passes or fails on them.
`python -m bench.tools [--duration 15] [--connections 32] [--profile DIR]`. Each tool call is one
stateless JSON-RPC POST, as an MCP client sends it after initializing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import httpx

from bench.edge import CASE_HEADER, case_line, measured, profile, wrk
from bench.stack import bench_stack, host_speed, host_speed_line
from hydractl.cli import create_tenant, mint

MCP_HEADERS = {
    "Content-Type": "application/json",
    "Accept": "application/json, text/event-stream",
    "MCP-Protocol-Version": "2025-06-18",
}


def tool_call(name: str, arguments: dict[str, object]) -> str:
    """The JSON-RPC body of one tools/call."""
    return json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    )


def main() -> None:
    arguments = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    arguments.add_argument("--duration", type=int, default=15)
    arguments.add_argument("--connections", type=int, default=32)
    arguments.add_argument("--profile", type=Path, help="write py-spy profiles of the gatekeeper here")
    args = arguments.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")
    speed_before = host_speed()
    with bench_stack() as (stack, env):
        base = stack.edge_url
        key = mint(
            env,
            tenant=create_tenant(env, "bench"),
            rate_limit=1_000_000_000,
            scopes=["crm:read", "crm:write"],
        )["key"]
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=auth, timeout=10) as http:
            leads = [
                http.post("/api/v1/leads", json={"name": f"seed {i}"}).json()["lead"] for i in range(200)
            ]
            lead = leads[100]
            get_body = tool_call("get_lead", {"id": lead["id"]})
            reply = http.post("/api/mcp/v1", content=get_body, headers=MCP_HEADERS)
            if reply.status_code != 200 or not reply.content:
                sys.exit(f"tools/call get_lead answered {reply.status_code}: {reply.text}")
            answer = reply.json()
            if answer.get("result", {}).get("structuredContent", {}).get("lead") != lead:
                sys.exit(f"tools/call get_lead did not answer the lead: {answer}")
        print(f"\n{args.connections} connections, {args.duration}s each, PostgreSQL + Redis\n")
        print(CASE_HEADER)
        cases: list[tuple[str, str, str | None]] = [
            ("GET /api/v1/leads/{id}", f"{base}/api/v1/leads/{lead['id']}", None),
            ("MCP tools/call get_lead", f"{base}/api/mcp/v1", get_body),
            ("GET /api/v1/leads?limit=25", f"{base}/api/v1/leads?limit=25", None),
            (
                "MCP tools/call list_leads (limit 25)",
                f"{base}/api/mcp/v1",
                tool_call("list_leads", {"limit": 25}),
            ),
        ]
        for name, url, body in cases:

            def run(name: str = name, url: str = url, body: str | None = body) -> dict[str, float]:
                spy = None
                if args.profile:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
                    spy = profile(
                        stack.processes["gatekeeper"].pid, args.profile / f"{slug}.json", args.duration
                    )
                figures = wrk(
                    url,
                    key,
                    duration=args.duration,
                    connections=args.connections,
                    body=body,
                    headers=MCP_HEADERS if body else None,
                )
                if spy is not None:
                    spy.wait()
                return figures

            figures, cpu = measured(stack.processes, run, args.duration)
            print(case_line(name, figures, cpu, busiest=4), flush=True)
    print(f"\n{host_speed_line(speed_before)}")


if __name__ == "__main__":
    main()
