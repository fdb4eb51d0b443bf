"""Poisoned confirmation emails through real services and a real SMTP server, on both buses: a refused or
deferred recipient never stops the next ticket's email; dead letters can be listed, retried and dropped."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hydractl.events import drop_dead_letters, list_dead_letters, retry_dead_letters
from services.common.channels import internal_metadata
from testbed.customers import create_customers, open_tickets
from testbed.smtp import SmtpSink, smtp_server
from testbed.stack import grpc_processes, stack_env
from tests.support.polling import wait_until

BUSES = ["in-process", "redis"]
FAST_RETRIES = {
    "HYDRA_EVENTS_MAX_ATTEMPTS": "3",
    "HYDRA_EVENTS_RETRY_MS": "200",
    "HYDRA_EVENTS_RETRY_MAX_MS": "400",
}


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with smtp_server() as sink:
        yield sink


def mail_stack_env(request: pytest.FixtureRequest, tmp_path: Path, smtp: SmtpSink, **extra: str) -> dict:
    """Embedded SQLite with the in-process bus, or PostgreSQL + Redis with delivery processes."""
    if request.param == "in-process":
        return stack_env(tmp_path, HYDRA_SMTP_URL=smtp.url, **extra)
    return stack_env(
        tmp_path,
        database_url=request.getfixturevalue("postgres_url"),
        redis_url=request.getfixturevalue("redis_url"),
        HYDRA_SMTP_URL=smtp.url,
        HYDRA_EVENTS_CONSUMERS="separate",
        **extra,
    )


@pytest.fixture(params=BUSES)
def mail_env(request: pytest.FixtureRequest, tmp_path: Path, smtp: SmtpSink) -> dict:
    return mail_stack_env(request, tmp_path, smtp)


@pytest.fixture(params=BUSES)
def fast_retry_env(request: pytest.FixtureRequest, tmp_path: Path, smtp: SmtpSink) -> dict:
    return mail_stack_env(request, tmp_path, smtp, **FAST_RETRIES)


def delivery_processes(env: dict[str, str]) -> list[str]:
    return ["tickets-delivery"] if env.get("HYDRA_EVENTS_CONSUMERS") == "separate" else []


def tenant_metadata() -> list[tuple[str, str]]:
    return internal_metadata(str(uuid.uuid4()), ["crm:write", "crm:read", "tickets:write"])


def test_a_refused_recipient_does_not_stop_the_next_confirmation_and_can_be_retried(
    mail_env: dict[str, str], smtp: SmtpSink
) -> None:
    md = tenant_metadata()
    poisoned, good = (f"{who}-{uuid.uuid4().hex[:8]}@example.com" for who in ("gone", "next"))
    smtp.refuse[poisoned] = "550 5.1.1 No such user"
    with grpc_processes(mail_env, "crm", "tickets", "instances") as stack:
        for name in delivery_processes(mail_env):
            stack.start_process(name)
        customers = create_customers(mail_env, md, [poisoned, good])
        open_tickets(mail_env, md, customers)  # the refused one first
        wait_until(lambda: smtp.to(good), what="the next ticket's confirmation")
        (letter,) = wait_until(
            lambda: list_dead_letters(mail_env, services=["tickets"]), what="the dead letter"
        )
        assert smtp.refused == [poisoned]  # a permanent refusal is not tried again
        assert (letter["consumer"], letter["topic"], letter["error"], letter["attempts"]) == (
            "tickets-confirmation",
            "ticket.confirmation_requested",
            "SMTPRecipientsRefused 550",
            1,
        )
        assert letter["status"] == "dead" and poisoned not in str(letter)  # no personal data listed

        del smtp.refuse[poisoned]  # the mailbox exists now: the operator replays it
        assert retry_dead_letters(mail_env, event_ids=[letter["event_id"]]) == 1
        wait_until(lambda: smtp.to(poisoned), what="the replayed confirmation")
        wait_until(lambda: not list_dead_letters(mail_env, retrying=True), what="the row gone once delivered")
        time.sleep(1)
    assert len(smtp.to(poisoned)) == 1 and len(smtp.to(good)) == 1


def test_a_deferred_recipient_becomes_a_dead_letter_after_bounded_retries_while_others_are_delivered(
    fast_retry_env: dict[str, str], smtp: SmtpSink
) -> None:
    env = fast_retry_env
    md = tenant_metadata()
    deferred = f"full-{uuid.uuid4().hex[:8]}@example.com"
    smtp.refuse[deferred] = "452 4.2.2 Mailbox full"
    with grpc_processes(env, "crm", "tickets", "instances") as stack:
        for name in delivery_processes(env):
            stack.start_process(name)
        (customer,) = create_customers(env, md, [deferred])
        open_tickets(env, md, [customer])
        others: list[str] = []

        def dead_while_others_flow() -> list[dict]:
            # A 4xx alone looks like the relay being busy: it counts against the message only
            # while other messages get through.
            address = f"other-{len(others)}-{uuid.uuid4().hex[:6]}@example.com"
            others.append(address)
            open_tickets(env, md, create_customers(env, md, [address]))
            return [d for d in list_dead_letters(env, services=["tickets"]) if d["status"] == "dead"]

        (letter,) = wait_until(dead_while_others_flow, timeout=60, what="the dead letter")
        wait_until(lambda: all(smtp.to(a) for a in others), what="every other confirmation")
    assert (letter["error"], letter["attempts"]) == ("SMTPRecipientsRefused 452", 3)
    assert smtp.to(deferred) == [] and len(smtp.refused) >= 3


def test_dead_letters_can_be_dropped(mail_env: dict[str, str], smtp: SmtpSink) -> None:
    md = tenant_metadata()
    poisoned = f"gone-{uuid.uuid4().hex[:8]}@example.com"
    smtp.refuse[poisoned] = "550 5.1.1 No such user"
    with grpc_processes(mail_env, "crm", "tickets", "instances") as stack:
        for name in delivery_processes(mail_env):
            stack.start_process(name)
        open_tickets(mail_env, md, create_customers(mail_env, md, [poisoned]))
        (letter,) = wait_until(
            lambda: list_dead_letters(mail_env, consumer="tickets-confirmation"), what="it"
        )
        assert drop_dead_letters(mail_env, services=["crm"], event_ids=[letter["event_id"]]) == 0
        assert drop_dead_letters(mail_env, tenant=letter["tenant_id"]) == 1
        assert list_dead_letters(mail_env, retrying=True) == []
