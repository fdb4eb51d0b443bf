"""Composition root of the tickets service: the only module naming concrete adapters (DB, crm channel)."""

from __future__ import annotations

from pathlib import Path

import grpc
from hydra.tickets.v1 import tickets_pb2, tickets_pb2_grpc

from services.common.audit import AuditLog
from services.common.batching import GroupCommitWriter, insert_row_sets
from services.common.events.hub import HubClient
from services.common.process import Basics, EventTables, Process, Wiring
from services.common.resource import GroupCommitted
from services.common.servicing import event_view
from services.tickets import models, repository
from services.tickets.config import Settings
from services.tickets.consumers import CONFIRMATION_TOPICS, confirmation_email
from services.tickets.crm import CrmDirectory
from services.tickets.service import TicketService
from services.tickets.servicer import TicketServicer


def build(basics: Basics[Settings]) -> Wiring:
    """Wires the tickets servicer and consumers on its database, its events and crm."""
    settings, db, events = basics.settings, basics.db, basics.events
    events.send_email("tickets-confirmation", CONFIRMATION_TOPICS, confirmation_email)
    hub = HubClient(settings.delivery.hub_address, caller="tickets")
    events.announce_to(hub)
    crm = CrmDirectory(settings.crm_address, timeout=settings.crm_timeout_seconds)
    writer = GroupCommitWriter(db=db, insert_many=insert_row_sets, logger=basics.logger, max_batch=200)
    tickets = TicketServicer(
        TicketService(
            db=db,
            table=repository.tickets,
            audit=AuditLog(models.audit_log),
            outbox=events.outbox,
            crm=crm,
            writes=GroupCommitted(writer),
            cursors=basics.cursors,
            announce=event_view(tickets_pb2.Ticket),
        )
    )

    def register(server: grpc.aio.Server) -> None:
        tickets_pb2_grpc.add_TicketServiceServicer_to_server(tickets, server)

    return Wiring(
        register=register,
        background=[writer.run],
        # The flush first: whatever the drained requests left pending.
        close=[writer.flush, crm.close, hub.close],
    )


PROCESS = Process(
    name="tickets",
    module="services.tickets",
    schema="tickets",
    migrations=Path(__file__).parent / "migrations",
    settings=Settings,
    services=[tickets_pb2.DESCRIPTOR.services_by_name["TicketService"]],
    build=build,
    events=EventTables(models.outbox, models.processed_events, models.dead_letters),
    idempotency=models.idempotency_keys,
)
