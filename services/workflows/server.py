"""Composition root of the workflows service: the only module naming concrete adapters (its database)."""

from __future__ import annotations

from pathlib import Path

import grpc
from hydra.workflows.v1 import (
    billing_pb2,
    billing_pb2_grpc,
    deployments_pb2,
    deployments_pb2_grpc,
    users_pb2,
    users_pb2_grpc,
    workflows_pb2,
    workflows_pb2_grpc,
)

from services.common.asgi import AsgiListener
from services.common.process import Basics, Process, Wiring
from services.workflows import models
from services.workflows.billing import Billing
from services.workflows.config import Settings
from services.workflows.deployments import DeploymentService
from services.workflows.library import LibraryService
from services.workflows.marketplace import MarketplaceService
from services.workflows.mcp_endpoint import DeploymentEndpoint
from services.workflows.paging import Pager
from services.workflows.servicer import (
    BillingServicer,
    DeploymentServicer,
    LibraryServicer,
    MarketplaceServicer,
    UserAdminServicer,
    UserServicer,
    WorkflowServicer,
)
from services.workflows.users import UserService
from services.workflows.workflows import WorkflowService


def build(basics: Basics[Settings]) -> Wiring:
    """Wires the marketplace's servicers on its database, and its deployments' MCP endpoints."""
    settings, db = basics.settings, basics.db
    pager = Pager(settings.cursor_key)
    billing = Billing(db, settings.stripe, basics.logger)
    users = UserService(db, billing)
    workflows = WorkflowService(db, pager)
    endpoint: DeploymentEndpoint | None = None

    async def cut(deployment_id: str) -> None:
        if endpoint is not None:
            await endpoint.cut(deployment_id)

    deployments = DeploymentService(db, pager, public_base_url=settings.public_base_url, cut=cut)
    endpoint = DeploymentEndpoint(deployments, basics.logger)
    mcp = AsgiListener(settings.mcp_address, endpoint, basics.logger, running=endpoint.running)

    def register(server: grpc.aio.Server) -> None:
        workflows_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowServicer(workflows), server)
        workflows_pb2_grpc.add_LibraryServiceServicer_to_server(
            LibraryServicer(LibraryService(db, pager)), server
        )
        workflows_pb2_grpc.add_MarketplaceServiceServicer_to_server(
            MarketplaceServicer(MarketplaceService(db, pager)), server
        )
        users_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(users), server)
        deployments_pb2_grpc.add_DeploymentServiceServicer_to_server(DeploymentServicer(deployments), server)
        billing_pb2_grpc.add_BillingServiceServicer_to_server(BillingServicer(billing), server)
        users_pb2_grpc.add_UserAdminServiceServicer_to_server(
            UserAdminServicer(users, workflows, settings.admin_token), server
        )

    return Wiring(register=register, start=mcp.start, close=[mcp.close])


PROCESS = Process(
    name="workflows",
    module="services.workflows",
    schema="workflows",
    migrations=Path(__file__).parent / "migrations",
    settings=Settings,
    services=[
        workflows_pb2.DESCRIPTOR.services_by_name["WorkflowService"],
        workflows_pb2.DESCRIPTOR.services_by_name["LibraryService"],
        workflows_pb2.DESCRIPTOR.services_by_name["MarketplaceService"],
        users_pb2.DESCRIPTOR.services_by_name["UserService"],
        deployments_pb2.DESCRIPTOR.services_by_name["DeploymentService"],
        billing_pb2.DESCRIPTOR.services_by_name["BillingService"],
        users_pb2.DESCRIPTOR.services_by_name["UserAdminService"],
    ],
    build=build,
    http_ports=("mcp",),
    idempotency=models.idempotency_keys,
)
