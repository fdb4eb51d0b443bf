"""tickets' event consumers: the confirmation email when a ticket is opened for a customer with an email."""

from __future__ import annotations

from services.common.events import Event, Handler
from services.common.mail import Email, Mailer

CONFIRMATION_TOPICS = {"ticket.created"}


def confirmation_email(mailer: Mailer) -> Handler:
    """Confirms a new ticket to its customer (nothing when the ticket has no customer email)."""

    async def handle(event: Event) -> None:
        address = event.payload.get("email")
        if not address:
            return
        await mailer.send(
            Email(
                to=address,
                subject=f"We received your request: {event.payload['title']}",
                body=(
                    "Thanks for reaching out. We opened a ticket and will get back to you.\n\n"
                    f"Ticket: {event.payload['ticket_id']}\n"
                ),
                message_id=f"<{event.id}@hydra.tickets>",
            )
        )

    return handle
