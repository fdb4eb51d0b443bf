"""tickets' event consumers: the confirmation email when a ticket is opened for a customer with an email."""

from __future__ import annotations

from services.common.events.bus import Event
from services.common.mail import Email

CONFIRMATION_REQUESTED = "ticket.confirmation_requested"
# ticket.created too: events recorded before the confirmation had a topic of its own (the announced
# ticket.created carries no email, so it sends nothing).
CONFIRMATION_TOPICS = {CONFIRMATION_REQUESTED, "ticket.created"}


def confirmation_email(event: Event) -> Email | None:
    """The confirmation of a new ticket to its customer (None without a customer email)."""
    address = event.payload.get("email")
    if not address:
        return None
    return Email(
        to=address,
        subject=f"We received your request: {event.payload['title']}",
        body=(
            "Thanks for reaching out. We opened a ticket and will get back to you.\n\n"
            f"Ticket: {event.payload['ticket_id']}\n"
        ),
        message_id=f"<{event.id}@hydra.tickets>",
    )
