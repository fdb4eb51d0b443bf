"""Side effects through the outbox: confirmation and CSAT emails, each delivered once, and flow events."""

from __future__ import annotations

import uuid
from email.header import decode_header, make_header

from tests.e2e.conftest import Edge, create_resource, open_conversation
from tests.support.smtp import wait_until

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


def test_a_title_with_line_breaks_is_confirmed_on_one_subject_line(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    contact = contact_with_email(edge, key)
    for title in ("Locked out\r\nBcc: attacker@example.com", "Still locked out — ça bloque"):
        response = edge.http.post(
            "/api/v1/tickets", json={"title": title, "customer_id": contact["id"]}, headers=key.bearer
        )
        assert response.status_code == 201
    mails = wait_until(
        lambda: (found := edge.mail_to(contact["email"])) and len(found) == 2 and found,
        what="both confirmations",
    )
    subjects = sorted(str(make_header(decode_header(m["Subject"]))) for m in mails)
    assert subjects == [
        "We received your request: Locked out Bcc: attacker@example.com",
        "We received your request: Still locked out — ça bloque",
    ]
    assert all(m["Bcc"] is None for m in mails)


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
