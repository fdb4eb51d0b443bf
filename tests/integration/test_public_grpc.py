"""The public service over real gRPC: no acknowledged page view is lost when the process is stopped."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2
from hydra.public.v1 import analytics_pb2, analytics_pb2_grpc, sites_pb2, sites_pb2_grpc

from services.common.channels import internal_metadata
from services.public.server import PROCESS
from testbed.stack import grpc_processes, stack_env
from tests.support.database import service_rows

EVENTS = 3000
IN_FLIGHT = 64


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'public.sqlite3'}"
    return request.getfixturevalue("postgres_url")


def struct(**values: object) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


async def track_until_stopped(
    address: str, token: str, stop_after: int, stop: threading.Event
) -> tuple[int, int]:
    """Sends page views, asking for a stop after `stop_after` answers; returns (sent, acknowledged)."""
    sent = acknowledged = 0
    gate = asyncio.Semaphore(IN_FLIGHT)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = analytics_pb2_grpc.AnalyticsServiceStub(channel)

        async def one(n: int) -> None:
            nonlocal sent, acknowledged
            async with gate:
                sent += 1
                request = analytics_pb2.TrackPageViewRequest(
                    page_view=struct(site_id=token, page_path=f"/p/{n}")
                )
                try:
                    await stub.TrackPageView(request, timeout=10)
                except grpc.aio.AioRpcError:
                    return
                acknowledged += 1
                if acknowledged == stop_after:
                    stop.set()

        await asyncio.gather(*(one(n) for n in range(EVENTS)))
    return sent, acknowledged


def test_every_acknowledged_page_view_survives_a_shutdown(database_url: str, tmp_path: Path) -> None:
    env = stack_env(tmp_path, database_url=database_url)
    address = f"127.0.0.1:{env['HYDRA_PUBLIC_PORT']}"
    tenant = str(uuid.uuid4())
    with grpc_processes(env, "public") as stack:
        with grpc.insecure_channel(address) as channel:
            site = sites_pb2_grpc.SiteServiceStub(channel).CreateSite(
                sites_pb2.CreateSiteRequest(site=struct(name="Site")),
                metadata=internal_metadata(tenant, ["sites:write"]),
            )
        stop = threading.Event()
        stopper = threading.Thread(target=lambda: stop.wait(30) and stack.stop_process("public"))
        stopper.start()
        sent, acknowledged = asyncio.run(track_until_stopped(address, site.tracking_token, 500, stop))
        stopper.join()
    assert 500 <= acknowledged < EVENTS  # the stop landed while page views were in flight
    url = env.get("HYDRA_PUBLIC_DATABASE_URL") or database_url
    ((stored,),) = service_rows(url, PROCESS.schema, "SELECT count(*) FROM page_views")
    # An acknowledgement means committed; a few may be committed whose answer the stop cut off.
    assert acknowledged <= stored <= sent
