"""crm's event consumers: the CSAT survey email after a conversation is resolved."""

from __future__ import annotations

from services.common.events import Event, Handler
from services.common.mail import Email, Mailer

CSAT_TOPICS = {"conversation.csat_requested"}


def csat_email(mailer: Mailer) -> Handler:
    """Sends the customer a CSAT survey (nothing when the conversation has no customer email)."""

    async def handle(event: Event) -> None:
        address = event.payload.get("email")
        if not address:
            return
        await mailer.send(
            Email(
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
        )

    return handle
