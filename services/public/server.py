"""Composition root of the public service: the only module naming concrete adapters (DB, peers, agents)."""

from __future__ import annotations

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

from services.common.audit import AuditLog
from services.common.batching import GroupCommitWriter
from services.common.events.hub import HubClient
from services.common.process import Basics, EventTables, Process, Wiring
from services.common.servicing import event_view
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


def build(basics: Basics[Settings]) -> Wiring:
    """Wires the public servicers and consumer on its database, its events, its peers and the agents."""
    settings, db, events, logger = basics.settings, basics.db, basics.events, basics.logger
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
    hub = HubClient(settings.delivery.hub_address, caller="public")
    events.announce_to(hub)
    forms = Forms(
        db=db,
        sites=directory,
        audit=audit,
        outbox=events.outbox,
        crm=crm,
        cursors=basics.cursors,
        announce=event_view(forms_pb2.FormSubmission),
    )
    events.consume_writing("public-form-leads", {FORM_SUBMITTED}, forms.capture_lead)
    sites = SiteServicer(SiteService(db=db, audit=audit, directory=directory, cursors=basics.cursors))
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

    return Wiring(
        register=register,
        background=[writer.run, guard.run],
        # The flush first: whatever the drained requests left pending.
        close=[writer.flush, agents.close, crm.close, instances.close, keys.close, hub.close],
    )


PROCESS = Process(
    name="public",
    module="services.public",
    schema="website",  # not "public": that is PostgreSQL's default schema
    migrations=Path(__file__).parent / "migrations",
    settings=Settings,
    services=[
        sites_pb2.DESCRIPTOR.services_by_name["SiteService"],
        analytics_pb2.DESCRIPTOR.services_by_name["AnalyticsService"],
        forms_pb2.DESCRIPTOR.services_by_name["FormService"],
        widget_pb2.DESCRIPTOR.services_by_name["WidgetService"],
    ],
    build=build,
    events=EventTables(models.outbox, models.processed_events, models.dead_letters),
    idempotency=models.idempotency_keys,
)
