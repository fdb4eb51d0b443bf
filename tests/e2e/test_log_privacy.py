"""No personal data in logs: a marked email address sent in the body of every route (valid and invalid
requests, side effects included) appears in no log file of any process."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

from edge.bindings import load_bindings
from hydractl.cli import DEMO_SCOPES, mint
from tests.e2e.conftest import Edge, core_key, create_instance, create_site, open_conversation
from tests.e2e.test_public_site import SUBMIT, visitor


def marked_bodies(marker: str, email: str) -> list[dict]:
    """Bodies that put the marker in every field a route might read, valid or not."""
    text_fields = (
        "name",
        "title",
        "description",
        "company",
        "phone",
        "notes",
        "subject",
        "content",
        "message",
        "system_prompt",
        "external_identifier",
        "provider",
        "page_path",
        "referrer",
        "session_id",
        "page_slug",
        "error_message",
    )
    return [
        {"email": email, **{field: marker for field in text_fields}},
        {"email": email, "name": marker},
        {"email": f"not an email {marker}", marker: marker},
        {"email": email, "form_data": {"email": email, "message": marker}, "config": {"secret": marker}},
        {"title": f"{marker}\x0b", "name": f"{marker}\x00"},
    ]


def test_a_marked_email_in_every_routes_body_reaches_no_log(edge: Edge) -> None:
    tag = uuid.uuid4().hex[:12]
    marker = f"pii-{tag}"
    email = f"{marker}@example.com"
    support = edge.key(scopes=DEMO_SCOPES)
    core = core_key(edge, support.tenant)
    instance = create_instance(edge, core, name="Bot")
    site = create_site(edge, core)
    widget = mint(edge.env, tenant=core.tenant, kind="widget", scopes=[], instance=instance["id"])["key"]
    conversation_id = open_conversation(edge, support.tenant)
    ids = {"instance_id": instance["id"], "site_id": site["id"], "id": conversation_id}

    # Valid writes whose side effects carry the address: a contact, a ticket emailed to it, a form lead.
    account = edge.http.post("/api/v1/accounts", json={"name": marker}, headers=support.bearer).json()
    contact = edge.http.post(
        "/api/v1/contacts",
        json={"email": email, "name": marker, "account_id": account["account"]["id"]},
        headers=support.bearer,
    ).json()["contact"]
    ticket = edge.http.post(
        "/api/v1/tickets", json={"title": marker, "customer_id": contact["id"]}, headers=support.bearer
    )
    assert ticket.status_code == 201, ticket.text
    with visitor(edge) as client:
        client.post(SUBMIT, json={"site_id": site["id"], "email": email, "form_data": {"name": marker}})
    # A duplicate key conflict, whose database error names the value.
    edge.http.post("/api/v1/leads", json={"email": email, "name": marker}, headers=support.bearer)

    headers = {**support.bearer, "X-Api-Key": core.secret, "X-Widget-Token": widget}
    headers["Authorization"] = f"Bearer {support.secret}"
    for binding in load_bindings():
        if binding.method not in ("POST", "PATCH", "PUT"):
            continue
        path = re.sub(
            r"\{([^}=]+)[^}]*\}", lambda m: ids.get(m.group(1), str(uuid.uuid4())), binding.template
        )
        route_headers = dict(headers)
        if binding.template.startswith("/v1"):
            del route_headers["Authorization"]
        for body in marked_bodies(marker, email):
            response = edge.http.request(binding.method, path, json=body, headers=route_headers)
            assert response.status_code < 500, (binding.template, response.status_code, response.text)

    assert wait_for_mail(edge, email), "the ticket confirmation never arrived"
    time.sleep(1)  # consumers and access logs flush
    log_dir = Path(edge.stack.log_dir)
    leaks = [
        f"{path.name}: {line[:200]}"
        for path in sorted(log_dir.glob("*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if marker in line
    ]
    assert leaks == []


def wait_for_mail(edge: Edge, address: str, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if edge.mail_to(address):
            return True
        time.sleep(0.1)
    return False
