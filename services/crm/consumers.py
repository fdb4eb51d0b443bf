"""crm's event consumers: the CSAT survey email after a conversation is resolved."""

from __future__ import annotations

from services.common.events.bus import Event
from services.common.mail import Email

CSAT_TOPICS = {"conversation.csat_requested"}


def csat_email(event: Event) -> Email | None:
    """The CSAT survey for a resolved conversation's customer (None without a customer email)."""
    address = event.payload.get("email")
    if not address:
        return None
    return Email(
        to=address,
        subject="How did we do?",
        body=(
            "Your conversation with us was resolved.\n\n"
            f"{event.payload.get('summary') or ''}\n\n"
            "Reply with a score from 1 (poor) to 5 (great) to tell us how we did.\n"
            f"Reference: {event.payload['conversation_id']}\n"
        ),
        message_id=f"<{event.id}@hydra.csat>",
    )
