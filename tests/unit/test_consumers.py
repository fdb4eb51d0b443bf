"""What each email consumer makes of an event."""

import uuid

from services.common.events.bus import Event
from services.crm.consumers import csat_email
from services.tickets.consumers import confirmation_email


def event(topic: str, **payload: object) -> Event:
    return Event(str(uuid.uuid4()), str(uuid.uuid4()), topic, payload)


def test_csat_email_goes_to_the_customer_with_a_stable_message_id() -> None:
    source = event(
        "conversation.csat_requested", email="a@example.com", conversation_id="c1", summary="2 messages"
    )
    email = csat_email(source)
    assert email is not None
    assert (email.to, email.subject, email.message_id) == (
        "a@example.com",
        "How did we do?",
        f"<{source.id}@hydra.csat>",
    )
    assert "2 messages" in email.body and "c1" in email.body


def test_confirmation_names_the_ticket() -> None:
    email = confirmation_email(event("ticket.created", email="b@example.com", title="Broken", ticket_id="t1"))
    assert email is not None and email.subject == "We received your request: Broken" and "t1" in email.body


def test_no_email_without_an_address() -> None:
    assert (
        csat_email(event("conversation.csat_requested", email=None, conversation_id="c", summary=None))
        is None
    )
    assert confirmation_email(event("ticket.created", email=None, title="T", ticket_id="t")) is None
