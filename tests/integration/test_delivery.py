"""At-least-once delivery with idempotent consumers: a consumer killed mid-send delivers each event once."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
import redis
import sqlalchemy as sa
from hydra.crm.v1 import accounts_pb2, accounts_pb2_grpc, contacts_pb2, contacts_pb2_grpc
from hydra.tickets.v1 import tickets_pb2, tickets_pb2_grpc

from hydractl.events import list_dead_letters
from services.common.channels import internal_metadata
from services.common.db import Database
from services.common.events.bus import Event, LocalBus
from services.common.events.faults import EventFailed
from services.common.events.inbox import idempotent, inbox_table
from services.common.events.outbox import Dispatcher, Outbox, Retention, outbox_table
from services.common.fields import utcnow
from testbed.customers import body, create_customers, open_tickets
from testbed.servers import free_port
from testbed.smtp import smtp_server
from testbed.stack import grpc_processes, stack_env, wait_serving
from tests.support.polling import wait_until

TENANTS = (uuid.uuid4(), uuid.uuid4())


def mailing_env(
    data_dir: Path, postgres_url: str, redis_url: str, smtp_url: str, consumers: str, **extra: str
) -> dict[str, str]:
    """A PostgreSQL + Redis stack's environment, mailing through the test's SMTP server."""
    return stack_env(
        data_dir,
        database_url=postgres_url,
        redis_url=redis_url,
        HYDRA_SMTP_URL=smtp_url,
        HYDRA_EVENTS_CONSUMERS=consumers,
        **extra,
    )


@pytest.mark.parametrize(
    ("consumers", "victim"), [("in-process", "tickets"), ("separate", "tickets-delivery")]
)
def test_consumer_killed_mid_delivery_sends_each_email_once(
    tmp_path: Path, postgres_url: str, redis_url: str, consumers: str, victim: str
) -> None:
    tenant = str(uuid.uuid4())
    md = internal_metadata(tenant, ["crm:write", "crm:read", "tickets:write"])
    with smtp_server() as smtp:
        env = mailing_env(
            tmp_path, postgres_url, redis_url, smtp.url, consumers, HYDRA_EVENTS_CLAIM_IDLE_MS="1000"
        )
        with grpc_processes(env, "crm", "tickets") as stack:
            if consumers == "separate":
                stack.start_process("tickets-delivery")
            addresses = [f"c{i}-{tenant[:8]}@example.com" for i in range(3)]
            customers = create_customers(env, md, addresses)
            smtp.stall.set()
            open_tickets(env, md, customers)
            wait_until(smtp.stalled.is_set, what="a delivery in flight")
            killed = stack.processes.pop(victim)
            os.killpg(killed.pid, signal.SIGKILL)  # no drain, no ack, no commit
            killed.wait()
            smtp.stall.clear()
            stack.start_process(victim)
            if victim == "tickets":
                wait_serving(f"127.0.0.1:{env['HYDRA_TICKETS_PORT']}")
            wait_until(lambda: all(smtp.to(a) for a in addresses), what="every confirmation")
            time.sleep(2)  # past the 1 s claim interval: a duplicate would have arrived by now
    assert [len(smtp.to(a)) for a in addresses] == [1, 1, 1]
    message_ids = [smtp.to(a)[0]["Message-ID"] for a in addresses]
    assert len(set(message_ids)) == 3


def test_separate_consumers_run_in_the_delivery_process_only(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    tenant = str(uuid.uuid4())
    md = internal_metadata(tenant, ["crm:write", "crm:read", "tickets:write"])
    address = f"apart-{tenant[:8]}@example.com"
    with smtp_server() as smtp:
        env = mailing_env(tmp_path, postgres_url, redis_url, smtp.url, "separate")
        with grpc_processes(env, "crm", "tickets") as stack:
            open_tickets(env, md, create_customers(env, md, [address]))
            time.sleep(2)  # dispatched at once: were the server consuming, the mail would be here by now
            assert smtp.to(address) == []
            stack.start_process("tickets-delivery")
            wait_until(lambda: smtp.to(address), what="the confirmation, from the delivery process")
            assert stack.processes["tickets-delivery"].poll() is None
    assert len(smtp.to(address)) == 1


def test_a_delivery_process_refuses_to_start_while_consumers_run_in_the_server(tmp_path: Path) -> None:
    env = stack_env(tmp_path)
    finished = subprocess.run(
        [sys.executable, "-m", "services.tickets", "deliver"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert b"a delivery process needs HYDRA_EVENTS_CONSUMERS=separate" in finished.stderr


def test_idempotent_consumer_handles_a_redelivered_event_once(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'inbox.sqlite3'}", schema="crm")
    metadata = sa.MetaData()
    inbox = inbox_table(metadata)
    handled: list[str] = []

    async def record(event: Event) -> None:
        handled.append(event.id)

    async def scenario() -> None:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        handle = idempotent(db, inbox, "test-consumer", record)
        event = Event(str(uuid.uuid4()), str(uuid.uuid4()), "ticket.created", {})
        for _ in range(3):
            await handle([event])
        await handle([Event(str(uuid.uuid4()), event.tenant_id, "ticket.created", {})])
        await db.dispose()

    asyncio.run(scenario())
    assert len(handled) == 2 and len(set(handled)) == 2


def test_a_failing_handler_is_retried_not_recorded(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'inbox.sqlite3'}", schema="crm")
    metadata = sa.MetaData()
    inbox = inbox_table(metadata)
    attempts: list[int] = []

    async def flaky(event: Event) -> None:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("relay down")

    async def scenario() -> None:
        async with db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        handle = idempotent(db, inbox, "test-consumer", flaky)
        event = Event(str(uuid.uuid4()), str(uuid.uuid4()), "ticket.created", {})
        with pytest.raises(EventFailed) as failed:
            await handle([event])
        assert isinstance(failed.value.cause, ConnectionError) and failed.value.event == event
        await handle([event])
        await handle([event])
        await db.dispose()

    asyncio.run(scenario())
    assert len(attempts) == 2


@pytest.fixture(params=["sqlite", "postgresql"])
def inbox_db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """A database holding only an inbox table, on each backend."""
    if request.param == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'inbox.sqlite3'}", schema="public")
    return Database(request.getfixturevalue("postgres_url"), schema="public")


def test_a_batch_failing_part_way_keeps_what_was_done_and_retries_only_the_rest(
    inbox_db: Database,
) -> None:
    metadata = sa.MetaData()
    inbox = inbox_table(metadata)
    handled: list[str] = []
    events = [Event(str(uuid.uuid4()), str(uuid.uuid4()), "ticket.created", {}) for _ in range(4)]
    poisoned = {events[2].id}

    async def handle_one(event: Event) -> None:
        if event.id in poisoned:
            raise ConnectionError("relay down")
        handled.append(event.id)

    async def scenario() -> None:
        async with inbox_db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        handle = idempotent(inbox_db, inbox, "test-consumer", handle_one)
        with pytest.raises(EventFailed) as failed:
            await handle(events)
        assert (failed.value.event, failed.value.handled) == (events[2], 2)
        assert isinstance(failed.value.cause, ConnectionError)
        assert handled == [events[0].id, events[1].id]
        poisoned.clear()
        await handle(events)  # redelivered whole: only the two never finished run
        await handle(events)
        async with inbox_db.read() as conn:
            recorded = (await conn.execute(sa.select(inbox.c.event_id))).scalars().all()
        await inbox_db.dispose()
        assert sorted(map(str, recorded)) == sorted(e.id for e in events)

    asyncio.run(scenario())
    assert handled == [e.id for e in events]


def test_an_event_redelivered_within_one_batch_is_handled_once(inbox_db: Database) -> None:
    metadata = sa.MetaData()
    inbox = inbox_table(metadata)
    handled: list[str] = []
    first, second = (Event(str(uuid.uuid4()), str(uuid.uuid4()), "ticket.created", {}) for _ in range(2))

    async def record(event: Event) -> None:
        handled.append(event.id)

    async def scenario() -> None:
        async with inbox_db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        # The dispatcher published `first` again (it stopped before marking it): one read holds both.
        await idempotent(inbox_db, inbox, "test-consumer", record)([first, second, first])
        await inbox_db.dispose()

    asyncio.run(scenario())
    assert handled == [first.id, second.id]


def test_the_dispatcher_publishes_each_pending_event_once_oldest_first(inbox_db: Database) -> None:
    metadata = sa.MetaData()
    outbox = outbox_table(metadata)
    published: list[list[int]] = []

    class RecordingBus(LocalBus):
        async def publish(self, events: Sequence[Event]) -> None:
            published.append([event.payload["n"] for event in events])

    async def scenario() -> int:
        async with inbox_db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            for n in range(5):  # two tenants, interleaved
                await Outbox(outbox).record(conn, tenant_id=TENANTS[n % 2], topic="t", payload={"n": n})
        dispatcher = Dispatcher(db=inbox_db, outbox=outbox, bus=RecordingBus(), logger=logging.getLogger())
        counts = [await dispatcher.dispatch_once(batch=3) for _ in range(3)]
        async with inbox_db.read() as conn:
            pending = await conn.scalar(sa.select(sa.func.count()).where(outbox.c.dispatched_at.is_(None)))
        await inbox_db.dispose()
        assert counts == [3, 2, 0]
        return int(pending or 0)

    assert asyncio.run(scenario()) == 0
    assert published == [[0, 1, 2], [3, 4]]


def test_records_past_retention_are_purged_and_a_pending_event_is_kept_however_old(
    inbox_db: Database,
) -> None:
    metadata = sa.MetaData()
    outbox, inbox = outbox_table(metadata), inbox_table(metadata)
    now = utcnow()
    old, recent = now - dt.timedelta(days=8), now - dt.timedelta(days=1)

    def event(dispatched_at: dt.datetime | None) -> dict[str, object]:
        return {
            "tenant_id": TENANTS[0],
            "id": uuid.uuid4(),
            "topic": "t",
            "payload": "{}",
            "created_at": old,
            "dispatched_at": dispatched_at,
        }

    dispatched_long_ago = [event(old) for _ in range(3)]
    kept_events = [event(recent), event(None)]  # dispatched yesterday; never dispatched
    records = [
        {"consumer": "c", "event_id": uuid.uuid4(), "processed_at": at} for at in (old, old, old, recent)
    ]

    async def scenario() -> tuple[int, set[uuid.UUID], set[uuid.UUID]]:
        async with inbox_db.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
            await conn.execute(sa.insert(outbox), [*dispatched_long_ago, *kept_events])
            await conn.execute(sa.insert(inbox), records)
        retention = Retention(
            db=inbox_db,
            stamps=(outbox.c.dispatched_at, inbox.c.processed_at),
            keep=dt.timedelta(days=7),
            logger=logging.getLogger(),
            batch=2,
        )
        deleted = await retention.purge_once(now)
        async with inbox_db.read() as conn:
            events_left = set((await conn.execute(sa.select(outbox.c.id))).scalars())
            records_left = set((await conn.execute(sa.select(inbox.c.event_id))).scalars())
        await inbox_db.dispose()
        return deleted, events_left, records_left

    deleted, events_left, records_left = asyncio.run(scenario())
    assert deleted == 6  # in batches of two: 2 + 1 of each table
    assert events_left == {e["id"] for e in kept_events}
    assert records_left == {records[3]["event_id"]}


def test_ticket_status_and_assignment_changes_reach_the_stream(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    tenant = str(uuid.uuid4())
    md = internal_metadata(tenant, ["tickets:write"])
    env = stack_env(tmp_path, database_url=postgres_url, redis_url=redis_url)
    agent = str(uuid.uuid4())
    with (
        grpc_processes(env, "crm", "tickets"),
        grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_TICKETS_PORT']}") as channel,
    ):
        tickets = tickets_pb2_grpc.TicketServiceStub(channel)
        ticket = tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(ticket=body(title="T")), metadata=md
        ).ticket
        tickets.UpdateTicket(
            tickets_pb2.UpdateTicketRequest(
                id=ticket.id, ticket=body(status="in_progress", assigned_to=agent)
            ),
            metadata=md,
        )
        tickets.UpdateTicket(
            tickets_pb2.UpdateTicketRequest(id=ticket.id, ticket=body(title="renamed")), metadata=md
        )
        client = redis.Redis.from_url(redis_url)
        stream = f"{env['HYDRA_EVENTS_STREAM_PREFIX']}:tickets"

        def topics() -> list[str]:
            return [fields[b"topic"].decode() for _, fields in client.xrange(stream)]

        flow = {"ticket.assigned", "ticket.confirmation_requested", "ticket.status_changed"}

        def all_three() -> list[str] | None:
            found = [topic for topic in topics() if topic in flow]
            return found if len(found) >= 3 else None

        seen = wait_until(all_three, what="the flow events")
        client.close()
    assert sorted(seen) == sorted(flow)


def test_email_waits_for_a_relay_that_is_down_and_is_sent_once_it_is_up(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    tenant = str(uuid.uuid4())
    md = internal_metadata(tenant, ["crm:write", "tickets:write"])
    relay_port = free_port()  # nothing listens here yet
    env = stack_env(
        tmp_path,
        database_url=postgres_url,
        redis_url=redis_url,
        HYDRA_SMTP_URL=f"smtp://127.0.0.1:{relay_port}",
        # Far more retries during the outage than an event's attempts: an outage is not the event's fault.
        HYDRA_EVENTS_MAX_ATTEMPTS="2",
        HYDRA_EVENTS_RETRY_MS="100",
        HYDRA_EVENTS_RETRY_MAX_MS="200",
    )
    with grpc_processes(env, "crm", "tickets", "instances"):
        with grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_CRM_PORT']}") as crm:
            account = (
                accounts_pb2_grpc.AccountServiceStub(crm)
                .CreateAccount(accounts_pb2.CreateAccountRequest(account=body(name="A")), metadata=md)
                .account
            )
            contact = (
                contacts_pb2_grpc.ContactServiceStub(crm)
                .CreateContact(
                    contacts_pb2.CreateContactRequest(
                        contact=body(email="late@example.com", account_id=account.id)
                    ),
                    metadata=md,
                )
                .contact
            )
        with grpc.insecure_channel(f"127.0.0.1:{env['HYDRA_TICKETS_PORT']}") as channel:
            tickets_pb2_grpc.TicketServiceStub(channel).CreateTicket(
                tickets_pb2.CreateTicketRequest(ticket=body(title="Help", customer_id=contact.id)),
                metadata=md,
            )
        time.sleep(3)  # the consumer has failed several times by now
        waiting = list_dead_letters(env, services=["tickets"], retrying=True)
        assert [(d["status"], d["attempts"]) for d in waiting] == [("retrying", 0)]
        with smtp_server(relay_port) as smtp:
            (mail,) = wait_until(lambda: smtp.to("late@example.com"), what="the delayed email")
            time.sleep(1.5)
            assert len(smtp.to("late@example.com")) == 1
        assert list_dead_letters(env, retrying=True) == []
    assert mail["Subject"] == "We received your request: Help"
