"""Outbound webhooks and the events feed, through the real edge, against real local receivers that
verify every delivery with the Standard Webhooks reference library."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence

import pytest

from tests.e2e.conftest import (
    NOWHERE,
    WEBHOOK_HOST,
    WEBHOOK_RETRIES,
    Edge,
    Key,
    core_key,
    create_instance,
    create_site,
    named_request,
    open_conversation,
)
from tests.e2e.test_public_site import visitor
from tests.support.polling import wait_until
from tests.support.webhook_receiver import WebhookReceiver

SCOPES = (
    "crm:read",
    "crm:write",
    "tickets:read",
    "tickets:write",
    "webhooks:read",
    "webhooks:write",
    "events:read",
)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(WEBHOOK_HOST) as started:
        yield started


def register(edge: Edge, key: Key, url: str, types: Sequence[str] = ("*",), **fields: object) -> dict:
    """Registers an endpoint over the Support API; returns it, with its secret."""
    body = {"url": url, "event_types": list(types), **fields}
    response = edge.http.post("/api/v1/webhooks", json=body, headers=key.bearer)
    assert response.status_code == 201, response.text
    webhook: dict = response.json()["webhook"]
    return webhook


def deliveries(edge: Edge, key: Key, webhook_id: str, **params: str) -> list[dict]:
    response = edge.http.get(f"/api/v1/webhooks/{webhook_id}/deliveries", params=params, headers=key.bearer)
    assert response.status_code == 200, response.text
    found: list[dict] = response.json()["deliveries"]
    return found


def create(edge: Edge, key: Key, collection: str, **fields: object) -> dict:
    response = edge.http.post(f"/api/v1/{collection}", json=fields, headers=key.bearer)
    assert response.status_code == 201, response.text
    (row,) = response.json().values()
    return dict(row)


def feed(edge: Edge, key: Key, **params: str) -> dict:
    response = edge.http.get("/api/v1/events", params=params, headers=key.bearer)
    assert response.status_code == 200, response.text
    page: dict = response.json()
    return page


def walk_feed(edge: Edge, key: Key, cursor: str | None = None, **params: str) -> tuple[list[dict], str]:
    """Every event after `cursor`, page by page; and the cursor to poll with next."""
    events: list[dict] = []
    while True:
        page = feed(edge, key, **params, **({"cursor": cursor} if cursor else {}))
        events += page["events"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return events, cursor


def test_an_endpoint_receives_its_types_signed_and_carrying_the_resource(
    edge: Edge, receiver: WebhookReceiver
) -> None:
    key = edge.key(scopes=SCOPES)
    webhook = register(edge, key, receiver.url, ["lead.*"], description="CRM sync")
    assert webhook["secret"].startswith("whsec_") and webhook["enabled"] is True
    assert webhook["event_types"] == ["lead.*"] and webhook["description"] == "CRM sync"
    receiver.secret = webhook["secret"]

    lead = create(edge, key, "leads", name="Ada", email="ada@example.com")
    changed = edge.http.patch(
        f"/api/v1/leads/{lead['id']}", json={"name": "Ada Lovelace"}, headers=key.bearer
    )
    assert changed.status_code == 200, changed.text
    create(edge, key, "accounts", name="Not subscribed")
    assert edge.http.delete(f"/api/v1/leads/{lead['id']}", headers=key.bearer).status_code == 204

    events = wait_until(
        lambda: (found := receiver.verified_events()) and len(found) >= 3 and found, what="three lead events"
    )
    # Deliveries to one endpoint run side by side: their order is not promised, their timestamps are.
    by_type = {e["type"]: e for e in events}
    assert len(events) == 3 and set(by_type) == {"lead.created", "lead.updated", "lead.deleted"}
    assert all(d.verified for d in receiver.deliveries)
    assert by_type["lead.created"]["data"] == lead  # the lead as the API answered its create
    assert by_type["lead.updated"]["data"] == changed.json()["lead"]
    assert by_type["lead.deleted"]["data"]["id"] == lead["id"]
    assert [by_type[t]["timestamp"] for t in ("lead.created", "lead.updated", "lead.deleted")] == sorted(
        e["timestamp"] for e in events
    )
    assert all(list(e) == ["id", "type", "timestamp", "data"] for e in events)
    for delivery in receiver.deliveries:
        assert delivery.headers["webhook-id"] == delivery.event["id"]
        assert delivery.headers["content-type"] == "application/json"

    log = wait_until(
        lambda: (
            (rows := deliveries(edge, key, webhook["id"]))
            and all(r["status"] == "succeeded" for r in rows)
            and rows
        ),
        what="the deliveries log",
    )
    assert len(log) == 3 and {r["event_type"] for r in log} == {
        "lead.created",
        "lead.updated",
        "lead.deleted",
    }
    assert all(r["attempts"] == 1 and r["response_status"] == 200 and r["last_error"] is None for r in log)
    # Never the secret again.
    read = edge.http.get(f"/api/v1/webhooks/{webhook['id']}", headers=key.bearer)
    assert read.status_code == 200 and "secret" not in read.json()["webhook"]
    listed = edge.http.get("/api/v1/webhooks", headers=key.bearer).json()
    assert [w["id"] for w in listed["webhooks"]] == [webhook["id"]] and "secret" not in listed["webhooks"][0]


def test_the_feed_lists_every_services_events_once_in_order_and_polls_from_its_cursor(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    core = core_key(edge, key.tenant)
    lead = create(edge, key, "leads", name="Feed lead")
    ticket = create(edge, key, "tickets", title="Feed ticket")
    instance = create_instance(edge, core)
    site = create_site(edge, core)
    with visitor(edge) as client:  # its own address: the per-IP form limit is its own
        submitted = client.post(
            "/v1/public/forms/submit", json={"site_id": site["id"], "form_data": {"message": "hello"}}
        )
    assert submitted.status_code == 200, submitted.text
    conversation = open_conversation(edge, key.tenant, messages=[("visitor", "Hello?")])
    expected = {
        ("conversation.created", conversation),
        ("lead.created", lead["id"]),
        ("ticket.created", ticket["id"]),
        ("instance.created", instance["id"]),
        ("form_submission.created", submitted.json()["submission_id"]),
    }

    def all_recorded() -> list[dict] | None:
        events, _ = walk_feed(edge, key)
        found = {(e["type"], e["data"]["id"]) for e in events}
        message = any(e["type"] == "message.created" for e in events)
        return events if expected <= found and message else None

    # Every event the writes above make, and no other: each service's arrive in their own time.
    events = wait_until(all_recorded, what="every service's events in the feed")
    assert len(events) == len(expected) + 1
    (message,) = [e["data"] for e in events if e["type"] == "message.created"]
    assert (message["conversation_id"], message["role"], message["content"]) == (
        conversation,
        "visitor",
        "Hello?",
    )
    assert len({e["id"] for e in events}) == len(events)  # none twice
    assert "knowledge" not in next(e for e in events if e["type"] == "instance.created")["data"]
    # The HydraCore surface lists the same feed.
    core_events = edge.http.get("/v1/events", headers=core.api_key).json()["events"]
    assert [e["id"] for e in core_events] == [e["id"] for e in events]

    # Polling from the last cursor: nothing, then exactly the new event.
    _, cursor = walk_feed(edge, key)
    empty = feed(edge, key, cursor=cursor)
    assert empty["events"] == [] and empty["count"] == 0 and empty["has_more"] is False
    assert empty["next_cursor"] == cursor
    later = create(edge, key, "leads", name="Later")
    news = wait_until(lambda: walk_feed(edge, key, cursor)[0], what="the next event")
    assert [(e["type"], e["data"]["id"]) for e in news] == [("lead.created", later["id"])]

    # Pages, and a type filter.
    paged, _ = walk_feed(edge, key, limit="1")
    assert [e["id"] for e in paged] == [e["id"] for e in events + news]
    only = walk_feed(edge, key, type="ticket.*")[0]
    assert [e["type"] for e in only] == ["ticket.created"]
    # Another tenant sees none of it.
    assert walk_feed(edge, edge.key(scopes=SCOPES))[0] == []


def test_feed_input_is_checked(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    bad_cursor = edge.http.get("/api/v1/events", params={"cursor": "forged"}, headers=key.bearer)
    assert bad_cursor.status_code == 400 and named_request(bad_cursor)["code"] == "validation_error"
    bad_type = edge.http.get("/api/v1/events", params={"type": "lead.exploded"}, headers=key.bearer)
    assert bad_type.status_code == 400, bad_type.text
    no_scope = edge.http.get("/api/v1/events", headers=edge.key(scopes=("crm:read",)).bearer)
    assert no_scope.status_code == 403


def test_a_receiver_that_is_down_gets_the_event_once_it_is_up(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    receiver = WebhookReceiver(WEBHOOK_HOST)
    receiver.start()
    url = receiver.url
    receiver.stop()  # the port is known, and nothing listens on it
    webhook = register(edge, key, url, ["lead.created"])
    lead = create(edge, key, "leads", name="Waits")

    failed = wait_until(
        lambda: (rows := deliveries(edge, key, webhook["id"])) and rows[0]["attempts"] >= 1 and rows[0],
        what="a failed attempt",
    )
    assert failed["status"] == "pending" and failed["last_error"] == "connection failed"
    assert failed["response_status"] is None and failed["next_attempt_at"] is not None

    up = WebhookReceiver(WEBHOOK_HOST, receiver.port)
    up.secret = webhook["secret"]
    with up:
        events = wait_until(up.verified_events, what="the delivery once the receiver is up")
    assert [(e["type"], e["data"]["id"]) for e in events] == [("lead.created", lead["id"])]
    done = wait_until(
        lambda: (
            (rows := deliveries(edge, key, webhook["id"])) and rows[0]["status"] == "succeeded" and rows[0]
        ),
        what="the delivery marked succeeded",
    )
    assert done["attempts"] >= 2 and done["last_error"] is None and done["response_status"] == 200


def test_an_endpoint_failing_every_attempt_is_disabled_with_a_reason_then_retried_by_hand(
    edge: Edge, receiver: WebhookReceiver
) -> None:
    key = edge.key(scopes=SCOPES)
    webhook = register(edge, key, receiver.url, ["lead.created"])
    receiver.secret = webhook["secret"]
    receiver.status = 503
    lead = create(edge, key, "leads", name="Refused")

    def disabled() -> dict | None:
        row = edge.http.get(f"/api/v1/webhooks/{webhook['id']}", headers=key.bearer).json()["webhook"]
        return row if not row["enabled"] else None

    row = wait_until(disabled, timeout=30, what="the endpoint disabled")
    assert "failed" in row["disabled_reason"] and "HTTP 503" in row["disabled_reason"]
    (failed,) = deliveries(edge, key, webhook["id"])
    assert failed["status"] == "failed" and failed["attempts"] == len(WEBHOOK_RETRIES) + 1
    assert failed["last_error"] == "HTTP 503" and failed["response_status"] == 503
    assert failed["next_attempt_at"] is None
    assert deliveries(edge, key, webhook["id"], status="failed") == [failed]
    assert deliveries(edge, key, webhook["id"], status="pending") == []
    # New events are not queued for a disabled endpoint (recorded, as the feed shows, before it is enabled).
    skipped = create(edge, key, "leads", name="Not queued")
    wait_until(
        lambda: skipped["id"] in {e["data"]["id"] for e in walk_feed(edge, key)[0]}, what="the skipped event"
    )

    retry = f"/api/v1/webhooks/{webhook['id']}/deliveries/{failed['id']}/retry"
    refused = edge.http.post(retry, headers=key.bearer)
    assert refused.status_code == 409 and named_request(refused)["code"] == "conflict"
    enabled = edge.http.patch(f"/api/v1/webhooks/{webhook['id']}", json={"enabled": True}, headers=key.bearer)
    assert enabled.status_code == 200 and enabled.json()["webhook"]["disabled_reason"] is None
    receiver.status = 200
    retried = edge.http.post(retry, headers=key.bearer)
    assert retried.status_code == 200, retried.text
    again = retried.json()["delivery"]
    assert again["id"] != failed["id"] and again["event_id"] == failed["event_id"]
    events = wait_until(receiver.verified_events, what="the retried delivery")
    assert [(e["type"], e["data"]["id"]) for e in events] == [("lead.created", lead["id"])]
    assert receiver.deliveries[-1].headers["webhook-id"] == failed["event_id"]  # the same message id
    assert len(deliveries(edge, key, webhook["id"])) == 2


def test_an_endpoint_holding_its_connections_never_holds_up_another(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    stuck, quick = WebhookReceiver(WEBHOOK_HOST), WebhookReceiver(WEBHOOK_HOST)
    stuck.hold = threading.Event()
    with stuck, quick:
        register(edge, key, stuck.url, ["lead.created"])
        quick.secret = register(edge, key, quick.url, ["lead.created"])["secret"]
        leads = [create(edge, key, "leads", name=f"Lead {n}")["id"] for n in range(12)]
        events = wait_until(
            lambda: len(found := quick.verified_events()) == len(leads) and found,
            what="every event at the quick one",
        )
        assert sorted(e["data"]["id"] for e in events) == sorted(leads)
        assert 0 < stuck.in_flight <= 4  # the stuck one holds its share of the connections, no more
        stuck.hold.set()
        wait_until(
            lambda: len(stuck.deliveries) == len(leads), what="the stuck one's deliveries once released"
        )


def test_a_rotated_secret_signs_beside_the_new_one_for_a_day(edge: Edge, receiver: WebhookReceiver) -> None:
    key = edge.key(scopes=SCOPES)
    webhook = register(edge, key, receiver.url, ["account.created"])
    rotated = edge.http.post(f"/api/v1/webhooks/{webhook['id']}/rotate-secret", headers=key.bearer)
    assert rotated.status_code == 200, rotated.text
    fresh = rotated.json()["webhook"]
    assert fresh["secret"].startswith("whsec_") and fresh["secret"] != webhook["secret"]
    assert fresh["previous_secret_expires_at"] is not None
    receiver.secret = webhook["secret"]  # a receiver that has not switched yet
    create(edge, key, "accounts", name="Old secret")
    wait_until(receiver.verified_events, what="a delivery verified with the old secret")
    receiver.secret = fresh["secret"]  # and one that has
    create(edge, key, "accounts", name="New secret")
    wait_until(lambda: len(receiver.verified_events()) == 2, what="a delivery verified with the new secret")
    assert all(len(d.headers["webhook-signature"].split()) == 2 for d in receiver.deliveries)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://10.0.0.8/hook",
        "http://[::1]:8080/",
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433/",
        "https://user:password@example.com/hook",
        "ftp://example.com/hook",
        "not a url",
    ],
)
def test_an_endpoint_at_an_internal_address_is_refused(edge: Edge, url: str) -> None:
    key = edge.key(scopes=SCOPES)
    response = edge.http.post("/api/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=key.bearer)
    assert response.status_code == 400, response.text
    assert named_request(response)["code"] == "validation_error"
    core = core_key(edge, key.tenant)
    refused = edge.http.post("/v1/webhooks", json={"url": url, "event_types": ["*"]}, headers=core.api_key)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["loc"] == ["body", "url"]


def test_a_name_that_resolves_to_loopback_is_never_connected(edge: Edge, receiver: WebhookReceiver) -> None:
    key = edge.key(scopes=SCOPES)
    # localhost is a name: accepted at registration, judged each time it is resolved, and refused.
    webhook = register(edge, key, f"http://localhost:{receiver.port}/hook", ["lead.created"])
    create(edge, key, "leads", name="Never sent")
    row = wait_until(
        lambda: (rows := deliveries(edge, key, webhook["id"])) and rows[0]["attempts"] >= 1 and rows[0],
        what="a refused attempt",
    )
    assert row["last_error"] == "address not allowed" and row["response_status"] is None
    assert receiver.deliveries == []


def test_endpoint_input_is_checked(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    cases = [
        {"url": "https://example.com/hook"},  # no event types
        {"url": "https://example.com/hook", "event_types": []},
        {"url": "https://example.com/hook", "event_types": ["lead.exploded"]},
        {"url": "https://example.com/hook", "event_types": ["*"], "enabled": False},  # update only
        {"url": "https://example.com/hook", "event_types": ["*"], "secret": "whsec_mine"},
    ]
    for body in cases:
        response = edge.http.post("/api/v1/webhooks", json=body, headers=key.bearer)
        assert response.status_code == 400, (body, response.text)
    webhook = register(edge, key, NOWHERE, ["lead.*", "lead.*", "ticket.created"])
    assert webhook["event_types"] == ["lead.*", "ticket.created"]
    other = edge.key(scopes=SCOPES)
    assert edge.http.get(f"/api/v1/webhooks/{webhook['id']}", headers=other.bearer).status_code == 404
    assert (
        edge.http.get(f"/api/v1/webhooks/{webhook['id']}/deliveries", headers=other.bearer).status_code == 404
    )
    missing = f"/api/v1/webhooks/{webhook['id']}/deliveries/{uuid.uuid4()}/retry"
    assert edge.http.post(missing, headers=key.bearer).status_code == 404


def test_hydracore_manages_the_same_endpoints_in_its_shape(edge: Edge) -> None:
    key = core_key(edge)
    created = edge.http.post(
        "/v1/webhooks",
        json={"url": NOWHERE, "event_types": ["instance.*"]},
        headers=key.api_key,
    )
    assert created.status_code == 201, created.text
    webhook = created.json()
    assert webhook["url"] == NOWHERE and webhook["secret"].startswith("whsec_")
    read = edge.http.get(f"/v1/webhooks/{webhook['id']}", headers=key.api_key)
    assert read.status_code == 200 and read.json()["id"] == webhook["id"] and "secret" not in read.json()
    malformed = edge.http.get("/v1/webhooks/not-a-uuid", headers=key.api_key)
    assert malformed.status_code == 422
    support = edge.key(key.tenant, scopes=SCOPES)
    listed = edge.http.get("/api/v1/webhooks", headers=support.bearer).json()["webhooks"]
    assert [w["id"] for w in listed] == [webhook["id"]]  # one tenant, one set of endpoints
    deleted = edge.http.delete(f"/v1/webhooks/{webhook['id']}", headers=key.api_key)
    assert deleted.status_code == 204
    assert edge.http.get(f"/v1/webhooks/{webhook['id']}", headers=key.api_key).status_code == 404


def test_endpoints_are_conditional_on_both_surfaces(edge: Edge) -> None:
    key = edge.key(scopes=SCOPES)
    webhook = register(edge, key, NOWHERE, ["*"])
    path = f"/api/v1/webhooks/{webhook['id']}"
    read = edge.http.get(path, headers=key.bearer)
    tag = read.headers["etag"]
    assert edge.http.get(path, headers={**key.bearer, "If-None-Match": tag}).status_code == 304
    changed = edge.http.patch(path, json={"description": "new"}, headers={**key.bearer, "If-Match": tag})
    assert changed.status_code == 200, changed.text
    stale = edge.http.patch(path, json={"description": "lost"}, headers={**key.bearer, "If-Match": tag})
    assert stale.status_code == 412 and named_request(stale)["code"] == "precondition_failed"
    core = core_key(edge, key.tenant)
    core_path = f"/v1/webhooks/{webhook['id']}"
    assert edge.http.delete(core_path, headers={**core.api_key, "If-Match": tag}).status_code == 412
    current = edge.http.get(core_path, headers=core.api_key).headers["etag"]
    assert edge.http.delete(core_path, headers={**core.api_key, "If-Match": current}).status_code == 204
