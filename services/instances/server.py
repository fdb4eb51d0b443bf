"""Composition root of the instances service: the only module naming concrete adapters (DB, gatekeeper,
the webhook sender)."""

from __future__ import annotations

from pathlib import Path

import grpc
from hydra.instances.v1 import (
    channels_pb2,
    channels_pb2_grpc,
    instances_pb2,
    instances_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
)

from services.common.audit import AuditLog
from services.common.events.outbox import Retention
from services.common.process import Basics, EventTables, Process, Wiring
from services.common.servicing import event_view
from services.instances import models, repository
from services.instances.config import Settings
from services.instances.gatekeeper import WidgetTokens
from services.instances.service import INSTANCE_DELETED, ChannelService, InstanceService
from services.instances.servicer import ChannelServicer, InstanceServicer
from services.instances.webhook_sender import WebhookSender
from services.instances.webhooks import EventHub, WebhookDeliveries, WebhookService
from services.instances.webhooks_servicer import CoreWebhookServicer, EventHubServicer, SupportWebhookServicer

PURGE_SECONDS = 600  # how often events and deliveries past the feed's retention are deleted


def build(basics: Basics[Settings]) -> Wiring:
    """Wires the instances servicers and consumers on its database, its events and the gatekeeper; and
    the event hub every service forwards its announcements to, with its webhook sender."""
    settings, db, events, cursors = basics.settings, basics.db, basics.events, basics.cursors
    tokens = WidgetTokens(settings.gatekeeper_address, admin_token=settings.admin_token)
    events.consume("instances-widget-tokens", {INSTANCE_DELETED}, tokens.revoke_for_deleted_instance)
    sender = WebhookSender(db, hosts=settings.webhook_hosts, settings=settings.sender, logger=basics.logger)
    hub = EventHub(db=db, cursors=cursors, queued=sender.wake)
    # Events and deliveries past the feed's retention.
    retention = Retention(
        db=db,
        stamps=(models.events.c.recorded_at, models.webhook_deliveries.c.created_at),
        keep=settings.events_kept,
        logger=basics.logger,
        interval_seconds=PURGE_SECONDS,
    )
    events.announce_to(hub)  # the hub's own announcements go straight in
    audit = AuditLog(models.audit_log)
    instances = InstanceServicer(
        InstanceService(
            db=db,
            table=repository.instances,
            audit=audit,
            outbox=events.outbox,
            announce=event_view(instances_pb2.Instance),
            model_hosts=settings.model_hosts,
            cursors=cursors,
        )
    )
    channels = ChannelServicer(
        ChannelService(
            db=db,
            table=repository.channels,
            audit=audit,
            instances=repository.instances,
            outbox=events.outbox,
            cursors=cursors,
            announce=event_view(channels_pb2.Channel),
        )
    )
    endpoints = WebhookService(
        db=db, table=repository.webhook_endpoints, audit=audit, hosts=settings.webhook_hosts, cursors=cursors
    )
    deliveries = WebhookDeliveries(
        db=db,
        endpoints=repository.webhook_endpoints,
        deliveries=repository.webhook_deliveries,
        audit=audit,
        cursors=cursors,
        queued=sender.wake,
    )

    def register(server: grpc.aio.Server) -> None:
        instances_pb2_grpc.add_InstanceServiceServicer_to_server(instances, server)
        channels_pb2_grpc.add_ChannelServiceServicer_to_server(channels, server)
        webhooks_pb2_grpc.add_SupportWebhookServiceServicer_to_server(
            SupportWebhookServicer(endpoints, deliveries, hub), server
        )
        webhooks_pb2_grpc.add_CoreWebhookServiceServicer_to_server(
            CoreWebhookServicer(endpoints, deliveries, hub), server
        )
        webhooks_pb2_grpc.add_EventHubServiceServicer_to_server(EventHubServicer(hub), server)

    return Wiring(
        register=register,
        background=[retention.run],
        deliveries=[sender.run],
        close=[tokens.close, sender.close],
    )


PROCESS = Process(
    name="instances",
    module="services.instances",
    schema="instances",
    migrations=Path(__file__).parent / "migrations",
    settings=Settings,
    services=[
        instances_pb2.DESCRIPTOR.services_by_name["InstanceService"],
        channels_pb2.DESCRIPTOR.services_by_name["ChannelService"],
        webhooks_pb2.DESCRIPTOR.services_by_name["SupportWebhookService"],
        webhooks_pb2.DESCRIPTOR.services_by_name["CoreWebhookService"],
        webhooks_pb2.DESCRIPTOR.services_by_name["EventHubService"],
    ],
    build=build,
    events=EventTables(models.outbox, models.processed_events, models.dead_letters),
    idempotency=models.idempotency_keys,
)
