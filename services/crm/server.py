"""Composition root of the crm service: the only module naming concrete adapters."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
from hydra.crm.v1 import (
    accounts_pb2,
    accounts_pb2_grpc,
    contacts_pb2,
    contacts_pb2_grpc,
    conversations_pb2,
    conversations_pb2_grpc,
    leads_pb2,
    leads_pb2_grpc,
)

from services.common import logging as hydra_logging
from services.common.audit import AuditLog
from services.common.db import Database
from services.common.delivery import EventDelivery
from services.common.grpc_server import GrpcApp
from services.common.grpc_server import deliver as deliver_app
from services.common.grpc_server import serve as serve_app
from services.common.migrations import upgrade
from services.crm import models, repository
from services.crm.config import Settings
from services.crm.consumers import CSAT_TOPICS, csat_email
from services.crm.service import AccountService, ContactService, ConversationService, LeadService
from services.crm.servicer import AccountServicer, ContactServicer, ConversationServicer, LeadServicer

SCHEMA = "crm"
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICES = [
    leads_pb2.DESCRIPTOR.services_by_name["LeadService"],
    accounts_pb2.DESCRIPTOR.services_by_name["AccountService"],
    contacts_pb2.DESCRIPTOR.services_by_name["ContactService"],
    conversations_pb2.DESCRIPTOR.services_by_name["ConversationService"],
]


def build(settings: Settings, logger: logging.Logger) -> GrpcApp:
    """Wires the crm app from settings."""
    db = Database(settings.database_url, schema=SCHEMA, pool_size=settings.pool_size)
    events = EventDelivery(
        settings.delivery,
        service="crm",
        address=settings.address,
        db=db,
        outbox=models.outbox,
        inbox=models.processed_events,
        dead_letters=models.dead_letters,
        logger=logger,
    )
    events.send_email("crm-csat", CSAT_TOPICS, csat_email)
    audit = AuditLog(models.audit_log)
    outbox = events.outbox
    leads = LeadServicer(LeadService(db=db, table=repository.leads, audit=audit))
    accounts = AccountServicer(
        AccountService(
            db=db, table=repository.accounts, audit=audit, contacts=repository.contacts, outbox=outbox
        )
    )
    contacts = ContactServicer(
        ContactService(db=db, table=repository.contacts, audit=audit, accounts=repository.accounts)
    )
    conversations = ConversationServicer(
        ConversationService(
            db=db,
            table=repository.conversations,
            audit=audit,
            messages=repository.messages,
            contacts=repository.contacts,
            outbox=outbox,
        )
    )

    def register(server: grpc.aio.Server) -> None:
        leads_pb2_grpc.add_LeadServiceServicer_to_server(leads, server)
        accounts_pb2_grpc.add_AccountServiceServicer_to_server(accounts, server)
        contacts_pb2_grpc.add_ContactServiceServicer_to_server(contacts, server)
        conversations_pb2_grpc.add_ConversationServiceServicer_to_server(conversations, server)

    async def close() -> None:
        await events.close()
        await db.dispose()

    return GrpcApp(
        name="crm",
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
    """Applies crm's migrations to its database."""
    upgrade(migrations_dir=MIGRATIONS, url=settings.database_url, schema=SCHEMA)


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Runs the crm server until stopped."""
    logger = hydra_logging.configure("crm", settings.log_level)
    await serve_app(build(settings, logger), logger, stop=stop)


async def deliver(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Runs the crm event consumers in a process of their own until stopped."""
    logger = hydra_logging.configure("crm-delivery", settings.log_level)
    await deliver_app(build(settings, logger), logger, stop=stop)
