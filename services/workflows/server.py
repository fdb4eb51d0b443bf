"""Composition root of the workflows service: the only module naming concrete adapters (its database)."""

from __future__ import annotations

from pathlib import Path

import grpc
from hydra.workflows.v1 import workflows_pb2, workflows_pb2_grpc

from services.common.process import Basics, Process, Wiring
from services.workflows.config import Settings
from services.workflows.library import LibraryService
from services.workflows.marketplace import MarketplaceService
from services.workflows.paging import Pager
from services.workflows.servicer import (
    LibraryServicer,
    MarketplaceServicer,
    UserAdminServicer,
    UserServicer,
    WorkflowServicer,
)
from services.workflows.users import UserService
from services.workflows.workflows import WorkflowService


def build(basics: Basics[Settings]) -> Wiring:
    """Wires the marketplace's servicers on its database."""
    settings, db = basics.settings, basics.db
    pager = Pager(settings.cursor_key)
    users = UserService(db)
    workflows = WorkflowService(db, pager)

    def register(server: grpc.aio.Server) -> None:
        workflows_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowServicer(workflows), server)
        workflows_pb2_grpc.add_LibraryServiceServicer_to_server(
            LibraryServicer(LibraryService(db, pager)), server
        )
        workflows_pb2_grpc.add_MarketplaceServiceServicer_to_server(
            MarketplaceServicer(MarketplaceService(db, pager)), server
        )
        workflows_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(users), server)
        workflows_pb2_grpc.add_UserAdminServiceServicer_to_server(
            UserAdminServicer(users, workflows, settings.admin_token), server
        )

    return Wiring(register=register)


PROCESS = Process(
    name="workflows",
    module="services.workflows",
    schema="workflows",
    migrations=Path(__file__).parent / "migrations",
    settings=Settings,
    services=[
        workflows_pb2.DESCRIPTOR.services_by_name[name]
        for name in (
            "WorkflowService",
            "LibraryService",
            "MarketplaceService",
            "UserService",
            "UserAdminService",
        )
    ],
    build=build,
)
