"""Composition root of the crm service: the only module naming concrete adapters."""

from __future__ import annotations

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

from services.common.audit import AuditLog
from services.common.batching import GroupCommitWriter, insert_row_sets
from services.common.events.hub import HubClient
from services.common.process import Basics, EventTables, Process, Wiring
from services.common.resource import GroupCommitted
from services.common.servicing import event_view
from services.crm import models, repository
from services.crm.accounts import AccountService
from services.crm.config import Settings
from services.crm.consumers import CSAT_TOPICS, csat_email
from services.crm.contacts import ContactService
from services.crm.conversations import ConversationService
from services.crm.leads import LeadService
from services.crm.servicer import AccountServicer, ContactServicer, ConversationServicer, LeadServicer


def build(basics: Basics[Settings]) -> Wiring:
    """Wires crm's servicers and consumers on its database and events."""
    db, events, cursors = basics.db, basics.events, basics.cursors
    events.send_email("crm-csat", CSAT_TOPICS, csat_email)
    hub = HubClient(basics.settings.delivery.hub_address, caller="crm")
    events.announce_to(hub)
    audit = AuditLog(models.audit_log)
    outbox = events.outbox
    # Leads and accounts are checked without the database: concurrent creates share a transaction.
    writer = GroupCommitWriter(db=db, insert_many=insert_row_sets, logger=basics.logger, max_batch=200)
    leads = LeadServicer(
        LeadService(
            db=db,
            table=repository.leads,
            audit=audit,
            outbox=outbox,
            writes=GroupCommitted(writer),
            cursors=cursors,
            announce=event_view(leads_pb2.Lead),
        )
    )
    accounts = AccountServicer(
        AccountService(
            db=db,
            table=repository.accounts,
            audit=audit,
            contacts=repository.contacts,
            outbox=outbox,
            writes=GroupCommitted(writer),
            cursors=cursors,
            announce=event_view(accounts_pb2.Account),
        )
    )
    contacts = ContactServicer(
        ContactService(
            db=db,
            table=repository.contacts,
            audit=audit,
            accounts=repository.accounts,
            outbox=outbox,
            cursors=cursors,
            announce=event_view(contacts_pb2.Contact),
        )
    )
    conversations = ConversationServicer(
        ConversationService(
            db=db,
            table=repository.conversations,
            audit=audit,
            messages=repository.messages,
            contacts=repository.contacts,
            outbox=outbox,
            cursors=cursors,
            announce=event_view(conversations_pb2.Conversation),
            announce_message=event_view(conversations_pb2.Message),
        )
    )

    def register(server: grpc.aio.Server) -> None:
        leads_pb2_grpc.add_LeadServiceServicer_to_server(leads, server)
        accounts_pb2_grpc.add_AccountServiceServicer_to_server(accounts, server)
        contacts_pb2_grpc.add_ContactServiceServicer_to_server(contacts, server)
        conversations_pb2_grpc.add_ConversationServiceServicer_to_server(conversations, server)

    # The flush on close: whatever the drained requests left pending.
    return Wiring(register=register, background=[writer.run], close=[writer.flush, hub.close])


PROCESS = Process(
    name="crm",
    module="services.crm",
    schema="crm",
    migrations=Path(__file__).parent / "migrations",
    settings=Settings,
    services=[
        leads_pb2.DESCRIPTOR.services_by_name["LeadService"],
        accounts_pb2.DESCRIPTOR.services_by_name["AccountService"],
        contacts_pb2.DESCRIPTOR.services_by_name["ContactService"],
        conversations_pb2.DESCRIPTOR.services_by_name["ConversationService"],
    ],
    build=build,
    events=EventTables(models.outbox, models.processed_events, models.dead_letters),
    idempotency=models.idempotency_keys,
)
