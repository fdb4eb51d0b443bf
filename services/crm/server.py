"""Composition root of the crm service: the only module naming concrete adapters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
from hydra.crm.v1 import leads_pb2, leads_pb2_grpc

from services.common import logging as hydra_logging
from services.common.db import Database
from services.common.grpc_server import GrpcApp
from services.common.grpc_server import serve as serve_app
from services.common.migrations import upgrade
from services.crm.config import Settings
from services.crm.service import LeadService
from services.crm.servicer import LeadServicer

SCHEMA = "crm"
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICES = [leads_pb2.DESCRIPTOR.services_by_name["LeadService"]]


def build(settings: Settings) -> GrpcApp:
    """Wires the crm app from settings."""
    db = Database(settings.database_url, schema=SCHEMA, pool_size=settings.pool_size)
    leads = LeadServicer(LeadService(db=db))

    def register(server: grpc.aio.Server) -> None:
        leads_pb2_grpc.add_LeadServiceServicer_to_server(leads, server)

    return GrpcApp(
        name="crm",
        address=settings.address,
        services=SERVICES,
        register=register,
        probe=db.ping,
        close=db.dispose,
    )


def migrate(settings: Settings) -> None:
    """Applies crm's migrations to its database."""
    upgrade(migrations_dir=MIGRATIONS, url=settings.database_url, schema=SCHEMA)


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Runs the crm server until stopped."""
    logger = hydra_logging.configure("crm", settings.log_level)
    await serve_app(build(settings), logger, stop=stop)
