"""Side effects through the outbox: confirmation and CSAT emails, each delivered once, and flow events."""

from __future__ import annotations

import uuid
from email.header import decode_header, make_header

from tests.e2e.conftest import Edge, create_resource, open_conversation
from tests.support.polling import wait_until

SCOPES = [
    "tickets:read",
    "tickets:write",
    "crm:read",
    "crm:write",
    "conversations:read",
    "conversations:write",
]


def contact_with_email(edge: Edge, key) -> dict:
    account = create_resource(edge, key, "/api/v1/accounts")
    address = f"customer-{uuid.uuid4().hex[:8]}@example.com"
    response = edge.http.post(
        "/api/v1/contacts", json={"email": address, "account_id": account["id"]}, headers=key.bearer
    )
    return response.json()["contact"]


def test_ticket_confirmation_email_is_sent_once(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    contact = contact_with_email(edge, key)
    response = edge.http.post(
        "/api/v1/tickets", json={"title": "Cannot log in", "customer_id": contact["id"]}, headers=key.bearer
    )
    ticket = response.json()["ticket"]
    (mail,) = wait_until(lambda: edge.mail_to(contact["email"]), what="the confirmation email")
    assert mail["Subject"] == "We received your request: Cannot log in"
    assert ticket["id"] in mail.get_payload()
    edge.http.post("/api/v1/tickets", json={"title": "no customer"}, headers=key.bearer)
    edge.http.patch(f"/api/v1/tickets/{ticket['id']}", json={"status": "resolved"}, headers=key.bearer)
    assert len(edge.mail_to(contact["email"])) == 1


def test_a_title_that_would_inject_a_header_is_refused_and_the_next_is_confirmed(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    contact = contact_with_email(edge, key)
    injected = edge.http.post(
        "/api/v1/tickets",
        json={"title": "Locked out\r\nBcc: attacker@example.com", "customer_id": contact["id"]},
        headers=key.bearer,
    )
    assert injected.status_code == 400 and "title" in injected.json()["error"]
    response = edge.http.post(
        "/api/v1/tickets",
        json={"title": "Still locked out — ça bloque", "customer_id": contact["id"]},
        headers=key.bearer,
    )
    assert response.status_code == 201
    (mail,) = wait_until(lambda: edge.mail_to(contact["email"]), what="the confirmation")
    assert (
        str(make_header(decode_header(mail["Subject"])))
        == "We received your request: Still locked out — ça bloque"
    )
    assert mail["Bcc"] is None


def test_resolving_a_conversation_sends_the_csat_survey(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    contact = contact_with_email(edge, key)
    conversation = open_conversation(
        edge, key.tenant, customer_id=contact["id"], messages=[("visitor", "Where is my order?")]
    )
    edge.http.patch(f"/api/v1/conversations/{conversation}", json={"status": "resolved"}, headers=key.bearer)
    (mail,) = wait_until(lambda: edge.mail_to(contact["email"]), what="the CSAT email")
    assert mail["Subject"] == "How did we do?" and "Where is my order?" in mail.get_payload()
    edge.http.patch(f"/api/v1/conversations/{conversation}", json={"status": "resolved"}, headers=key.bearer)
    assert len(edge.mail_to(contact["email"])) == 1
