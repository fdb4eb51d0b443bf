"""A poisoned ticket confirmation never stops the next ticket's email, on the in-process and the Redis
Streams bus: through the real stack, with the poison recorded in the outbox as an older release did."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from email.header import decode_header, make_header

from services.common.db import Database
from services.common.events.outbox import Outbox
from services.tickets import models
from services.tickets.config import Settings
from services.tickets.consumers import CONFIRMATION_REQUESTED
from services.tickets.server import PROCESS
from tests.e2e.conftest import Edge
from tests.e2e.test_side_effects import SCOPES, contact_with_email
from tests.support.polling import wait_until


def record_events(edge: Edge, tenant: str, payloads: list[dict]) -> None:
    """Records confirmation events straight into the tickets outbox, as a write once did."""

    async def record() -> None:
        db = Database(Settings.from_env(edge.env).database_url, schema=PROCESS.schema)
        async with db.transaction() as conn:
            for payload in payloads:
                await Outbox(models.outbox).record(
                    conn, tenant_id=uuid.UUID(tenant), topic=CONFIRMATION_REQUESTED, payload=payload
                )
        await db.dispose()

    asyncio.run(record())


def hydractl(edge: Edge, *args: str) -> object:
    finished = subprocess.run(
        [sys.executable, "-m", "hydractl", *args, "--json"],
        env=edge.env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return json.loads(finished.stdout)


def test_a_poisoned_confirmation_does_not_stop_the_next_tickets_email(edge: Edge) -> None:
    victim = edge.tenant()
    address = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    # Recorded before titles were checked for control characters: a vertical tab, in a title long
    # enough for its subject to be folded (this one failed every retry and blocked every tenant's mail),
    # and an event of a shape the confirmation cannot be made from at all.
    long_title = "Cannot log in to the billing portal since the update this morning\vPlease help"
    malformed = {"ticket_id": str(uuid.uuid4()), "email": address}  # no title
    record_events(
        edge, victim, [{"ticket_id": str(uuid.uuid4()), "title": long_title, "email": address}, malformed]
    )

    key = edge.key(scopes=SCOPES)  # another tenant's ordinary ticket, after the poison
    contact = contact_with_email(edge, key)
    response = edge.http.post(
        "/api/v1/tickets", json={"title": "Next in line", "customer_id": contact["id"]}, headers=key.bearer
    )
    assert response.status_code == 201
    (mail,) = wait_until(lambda: edge.mail_to(contact["email"]), what="the next ticket's confirmation")
    assert mail["Subject"] == "We received your request: Next in line"

    (confirmed,) = wait_until(lambda: edge.mail_to(address), what="the vertical-tab title's confirmation")
    subject = str(make_header(decode_header(confirmed["Subject"].replace("\n", ""))))
    assert subject == "We received your request: " + long_title.replace("\v", " ")

    (letter,) = wait_until(
        lambda: hydractl(edge, "events", "dead-letters", "list", "--service", "tickets", "--tenant", victim),
        what="the dead letter",
    )
    assert (letter["consumer"], letter["error"], letter["attempts"], letter["status"]) == (
        "tickets-confirmation",
        "KeyError",
        1,
        "dead",
    )
    assert hydractl(edge, "events", "dead-letters", "drop", "--all", "--tenant", victim) == {"dropped": 1}
    assert hydractl(edge, "events", "dead-letters", "list", "--tenant", victim, "--retrying") == []
