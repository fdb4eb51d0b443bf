"""Composition root of the instances service: the only module naming concrete adapters (DB, gatekeeper)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
from hydra.instances.v1 import channels_pb2, channels_pb2_grpc, instances_pb2, instances_pb2_grpc

from services.common import logging as hydra_logging
from services.common.audit import AuditLog
from services.common.db import Database
from services.common.delivery import EventDelivery
from services.common.grpc_server import GrpcApp
from services.common.grpc_server import deliver as deliver_app
from services.common.grpc_server import serve as serve_app
from services.common.migrations import upgrade
from services.instances import models, repository
from services.instances.config import Settings
from services.instances.gatekeeper import WidgetTokens
from services.instances.service import INSTANCE_DELETED, ChannelService, InstanceService
from services.instances.servicer import ChannelServicer, InstanceServicer

SCHEMA = "instances"
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICES = [
    instances_pb2.DESCRIPTOR.services_by_name["InstanceService"],
    channels_pb2.DESCRIPTOR.services_by_name["ChannelService"],
]


def build(settings: Settings, logger: logging.Logger) -> GrpcApp:
    """Wires the instances app from settings."""
    db = Database(settings.database_url, schema=SCHEMA, pool_size=settings.pool_size)
    events = EventDelivery(
        settings.delivery,
        service="instances",
        address=settings.address,
        db=db,
        outbox=models.outbox,
        inbox=models.processed_events,
        dead_letters=models.dead_letters,
        logger=logger,
    )
    tokens = WidgetTokens(settings.gatekeeper_address, admin_token=settings.admin_token)
    events.consume("instances-widget-tokens", {INSTANCE_DELETED}, tokens.revoke_for_deleted_instance)
    audit = AuditLog(models.audit_log)
    instances = InstanceServicer(
        InstanceService(
            db=db,
            table=repository.instances,
            audit=audit,
            outbox=events.outbox,
            model_hosts=settings.model_hosts,
        )
    )
    channels = ChannelServicer(
        ChannelService(db=db, table=repository.channels, audit=audit, instances=repository.instances)
    )

    def register(server: grpc.aio.Server) -> None:
        instances_pb2_grpc.add_InstanceServiceServicer_to_server(instances, server)
        channels_pb2_grpc.add_ChannelServiceServicer_to_server(channels, server)

    async def close() -> None:
        await events.close()
        await tokens.close()
        await db.dispose()

    return GrpcApp(
        name="instances",
        address=settings.address,
        services=SERVICES,
        register=register,
        probe=db.ping,
        close=close,
        background=events.background,
        consumers=events.consumers,
        separate_consumers=events.separate_consumers,
    )


def migrate(settings: Settings) -> None:
    """Applies the instances migrations."""
    upgrade(migrations_dir=MIGRATIONS, url=settings.database_url, schema=SCHEMA)


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Runs the instances server until stopped."""
    logger = hydra_logging.configure("instances", settings.log_level)
    await serve_app(build(settings, logger), logger, stop=stop)


async def deliver(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Runs the instances event consumers in a process of their own until stopped."""
    logger = hydra_logging.configure("instances-delivery", settings.log_level)
    await deliver_app(build(settings, logger), logger, stop=stop)
