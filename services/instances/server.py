"""Composition root of the instances service: the only module naming concrete adapters (DB, gatekeeper)."""

from __future__ import annotations

from pathlib import Path

import grpc
from hydra.instances.v1 import channels_pb2, channels_pb2_grpc, instances_pb2, instances_pb2_grpc

from services.common.audit import AuditLog
from services.common.process import Basics, EventTables, Process, Wiring
from services.instances import models, repository
from services.instances.config import Settings
from services.instances.gatekeeper import WidgetTokens
from services.instances.service import INSTANCE_DELETED, ChannelService, InstanceService
from services.instances.servicer import ChannelServicer, InstanceServicer


def build(basics: Basics[Settings]) -> Wiring:
    """Wires the instances servicers and consumer on its database, its events and the gatekeeper."""
    settings, db, events = basics.settings, basics.db, basics.events
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
            cursors=basics.cursors,
        )
    )
    channels = ChannelServicer(
        ChannelService(
            db=db,
            table=repository.channels,
            audit=audit,
            instances=repository.instances,
            cursors=basics.cursors,
        )
    )

    def register(server: grpc.aio.Server) -> None:
        instances_pb2_grpc.add_InstanceServiceServicer_to_server(instances, server)
        channels_pb2_grpc.add_ChannelServiceServicer_to_server(channels, server)

    return Wiring(register=register, close=[tokens.close])


PROCESS = Process(
    name="instances",
    module="services.instances",
    schema="instances",
    migrations=Path(__file__).parent / "migrations",
    settings=Settings,
    services=[
        instances_pb2.DESCRIPTOR.services_by_name["InstanceService"],
        channels_pb2.DESCRIPTOR.services_by_name["ChannelService"],
    ],
    build=build,
    events=EventTables(models.outbox, models.processed_events, models.dead_letters),
    idempotency=models.idempotency_keys,
)
