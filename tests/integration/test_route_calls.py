"""Tool calls reach the services over real gRPC as the routes they stand for: the same answers, the same
refusals in the surface's envelope, and another tenant's rows stay not found."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from edge.route_calls import Caller, RouteCalls, RouteError
from edge.tools import tools
from services.common.surfaces import SUPPORT
from testbed.stack import grpc_processes, stack_env

SCOPES = ("crm:read", "crm:write")


def test_support_tools_answer_as_their_routes(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    support = {t.name: t for t in tools(SUPPORT)}
    mine = Caller(str(uuid.uuid4()), "key-1", SCOPES)
    theirs = Caller(str(uuid.uuid4()), "key-2", SCOPES)

    async def scenario(calls: RouteCalls) -> None:
        created = await calls.call(
            support["create_lead"], {"lead": {"email": "ada@example.com", "name": "Ada"}}, mine
        )
        lead = created["lead"]
        assert lead["email"] == "ada@example.com" and lead["tenant_id"] == mine.tenant_id
        assert (await calls.call(support["get_lead"], {"id": lead["id"]}, mine))["lead"] == lead
        listed = await calls.call(support["list_leads"], {"limit": 10}, mine)
        assert [row["id"] for row in listed["leads"]] == [lead["id"]] and listed["count"] == 1
        with pytest.raises(RouteError) as other:
            await calls.call(support["get_lead"], {"id": lead["id"]}, theirs)
        assert other.value.http_status == 404 and other.value.body["code"] == "not_found"
        with pytest.raises(RouteError) as invalid:
            await calls.call(support["create_lead"], {"lead": {"email": "not an email"}}, mine)
        assert invalid.value.http_status == 400 and invalid.value.body["code"] == "validation_error"
        with pytest.raises(RouteError) as scope:
            await calls.call(
                support["delete_lead"], {"id": lead["id"]}, Caller(mine.tenant_id, "key-3", ["crm:read"])
            )
        assert scope.value.http_status == 403 and scope.value.body["code"] == "forbidden_scope"
        assert await calls.call(support["delete_lead"], {"id": lead["id"]}, mine) == {}

    with grpc_processes(env, "crm"):

        async def run() -> None:
            calls = RouteCalls({"crm": f"127.0.0.1:{env['HYDRA_CRM_PORT']}"})
            try:
                await scenario(calls)
            finally:
                await calls.close()

        asyncio.run(run())
