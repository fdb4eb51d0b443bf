"""Composition root of the public service: the only module naming concrete adapters (DB, peers, agents)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
from hydra.public.v1 import (
    analytics_pb2,
    analytics_pb2_grpc,
    forms_pb2,
    forms_pb2_grpc,
    sites_pb2,
    sites_pb2_grpc,
    widget_pb2,
    widget_pb2_grpc,
)

from services.common import logging as hydra_logging
from services.common.audit import AuditLog
from services.common.batching import GroupCommitWriter
from services.common.db import Database
from services.common.delivery import EventDelivery
from services.common.grpc_server import GrpcApp
from services.common.grpc_server import deliver as deliver_app
from services.common.grpc_server import serve as serve_app
from services.common.migrations import upgrade
from services.public import models, repository
from services.public.agents import Agents
from services.public.config import Settings
from services.public.crm import CrmConversations
from services.public.gatekeeper import KeyStatus
from services.public.instances import InstanceCatalog
from services.public.service import FORM_SUBMITTED, Analytics, Forms, SiteDirectory, SiteService
from services.public.servicer import AnalyticsServicer, FormServicer, SiteServicer, WidgetServicer
from services.public.tagging import Tagger
from services.public.widget import StreamGuard, WidgetChat

SCHEMA = "website"  # not "public": that is PostgreSQL's default schema
MIGRATIONS = Path(__file__).parent / "migrations"
SERVICES = [
    sites_pb2.DESCRIPTOR.services_by_name["SiteService"],
    analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"],
    forms_pb2.DESCRIPTOR.services_by_name["FormService"],
    widget_pb2.DESCRIPTOR.services_by_name["WidgetService"],
]


def build(settings: Settings, logger: logging.Logger) -> GrpcApp:
    """Wires the public app from settings."""
    db = Database(settings.database_url, schema=SCHEMA, pool_size=settings.pool_size)
    events = EventDelivery(
        settings.delivery,
        service="public",
        address=settings.address,
        db=db,
        outbox=models.outbox,
        inbox=models.processed_events,
        dead_letters=models.dead_letters,
        logger=logger,
    )
    crm = CrmConversations(settings.crm_address, timeout=settings.peer_timeout_seconds)
    instances = InstanceCatalog(settings.instances_address, timeout=settings.peer_timeout_seconds)
    keys = KeyStatus(settings.gatekeeper_address, timeout=settings.peer_timeout_seconds)
    agents = Agents(defaults=settings.agent, limits=settings.agent_limits, hosts=settings.agent_hosts)
    guard = StreamGuard(
        keys=keys, instances=instances, interval=settings.widget.recheck_seconds, logger=logger
    )
    directory = SiteDirectory(db=db, ttl=settings.site_cache_seconds)
    writer = GroupCommitWriter(db=db, insert_many=repository.insert_page_views, logger=logger)
    audit = AuditLog(models.audit_log)
    forms = Forms(db=db, sites=directory, audit=audit, outbox=events.outbox, crm=crm)
    events.consume_writing("public-form-leads", {FORM_SUBMITTED}, forms.capture_lead)
    sites = SiteServicer(SiteService(db=db, audit=audit, directory=directory))
    analytics = AnalyticsServicer(Analytics(db=db, sites=directory, writer=writer))
    chat = WidgetServicer(
        WidgetChat(
            instances=instances,
            crm=crm,
            agents=agents,
            tagger=Tagger(),
            guard=guard,
            limits=settings.widget,
            logger=logger,
        )
    )

    def register(server: grpc.aio.Server) -> None:
        sites_pb2_grpc.add_SiteServiceServicer_to_server(sites, server)
        analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server(analytics, server)
        forms_pb2_grpc.add_FormServiceServicer_to_server(FormServicer(forms), server)
        widget_pb2_grpc.add_WidgetServiceServicer_to_server(chat, server)

    async def close() -> None:
        await writer.flush()  # whatever the drained requests left pending
        await events.close()
        await agents.close()
        await crm.close()
        await instances.close()
        await keys.close()
        await db.dispose()

    return GrpcApp(
        name="public",
        address=settings.address,
        services=SERVICES,
        register=register,
        probe=db.ping,
        close=close,
        background=[writer.run, guard.run, *events.background],
        consumers=events.consumers,
        separate_consumers=events.separate_consumers,
    )


def migrate(settings: Settings) -> None:
    """Applies the public migrations."""
    upgrade(migrations_dir=MIGRATIONS, url=settings.database_url, schema=SCHEMA)


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Runs the public server until stopped."""
    logger = hydra_logging.configure("public", settings.log_level)
    await serve_app(build(settings, logger), logger, stop=stop)


async def deliver(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Runs the public event consumers in a process of their own until stopped."""
    logger = hydra_logging.configure("public-delivery", settings.log_level)
    await deliver_app(build(settings, logger), logger, stop=stop)
