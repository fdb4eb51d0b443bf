"""Composition root of the tickets service: the only module naming concrete adapters (DB, crm channel)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
from hydra.tickets.v1 import tickets_pb2, tickets_pb2_grpc

from services.common import logging as hydra_logging
from services.common.audit import AuditLog
from services.common.batching import GroupCommitWriter, insert_row_sets
from services.common.db import Database
from services.common.delivery import EventDelivery
from services.common.grpc_server import GrpcApp
from services.common.grpc_server import deliver as deliver_app
from services.common.grpc_server import serve as serve_app
from services.common.migrations import upgrade
from services.tickets import models, repository
from services.tickets.config import Settings
from services.tickets.consumers import CONFIRMATION_TOPICS, confirmation_email
from services.tickets.crm import CrmDirectory
from services.tickets.service import TicketService
from services.tickets.servicer import TicketServicer

SCHEMA = "tickets"
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICES = [tickets_pb2.DESCRIPTOR.services_by_name["TicketService"]]


def build(settings: Settings, logger: logging.Logger) -> GrpcApp:
    """Wires the tickets app from settings."""
    db = Database(settings.database_url, schema=SCHEMA, pool_size=settings.pool_size)
    events = EventDelivery(
        settings.delivery,
        service="tickets",
        address=settings.address,
        db=db,
        outbox=models.outbox,
        inbox=models.processed_events,
        dead_letters=models.dead_letters,
        logger=logger,
    )
    events.send_email("tickets-confirmation", CONFIRMATION_TOPICS, confirmation_email)
    crm = CrmDirectory(settings.crm_address, timeout=settings.crm_timeout_seconds)
    writer = GroupCommitWriter(db=db, insert_many=insert_row_sets, logger=logger, max_batch=200)
    tickets = TicketServicer(
        TicketService(
            db=db,
            table=repository.tickets,
            audit=AuditLog(models.audit_log),
            outbox=events.outbox,
            crm=crm,
            writer=writer,
        )
    )

    def register(server: grpc.aio.Server) -> None:
        tickets_pb2_grpc.add_TicketServiceServicer_to_server(tickets, server)

    async def close() -> None:
        await writer.flush()  # whatever the drained requests left pending
        await events.close()
        await crm.close()
        await db.dispose()

    # Health follows the own database only: with crm down, reads still work and writes answer 503.
    return GrpcApp(
        name="tickets",
        address=settings.address,
        services=SERVICES,
        register=register,
        probe=db.ping,
        close=close,
        background=[writer.run, *events.background],
        consumers=events.consumers,
        separate_consumers=events.separate_consumers,
    )


def migrate(settings: Settings) -> None:
    """Applies the tickets migrations."""
    upgrade(migrations_dir=MIGRATIONS, url=settings.database_url, schema=SCHEMA)


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Runs the tickets server until stopped."""
    logger = hydra_logging.configure("tickets", settings.log_level)
    await serve_app(build(settings, logger), logger, stop=stop)


async def deliver(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Runs the tickets event consumers in a process of their own until stopped."""
    logger = hydra_logging.configure("tickets-delivery", settings.log_level)
    await deliver_app(build(settings, logger), logger, stop=stop)
