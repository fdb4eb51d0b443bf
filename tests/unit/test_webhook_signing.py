"""Deliveries are signed as the Standard Webhooks reference library verifies them, and carry the event
as the feed lists it."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.common.events.catalogue import EVENT_TYPES, is_subscription, subscribes
from services.instances.webhook_sender import event_body, sign
from services.instances.webhooks import new_secret


def test_a_signature_verifies_with_the_reference_library_and_only_with_its_secret() -> None:
    secret, other = new_secret(), new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    event_id = str(uuid.uuid4())
    body = event_body(uuid.UUID(event_id), "lead.created", dt.datetime.now(dt.UTC), '{"id":"x","n":1}')
    now = int(time.time())
    headers = {
        "webhook-id": event_id,
        "webhook-timestamp": str(now),
        "webhook-signature": sign(secret, event_id, now, body),
    }
    assert Webhook(secret).verify(body, headers)["data"] == {"id": "x", "n": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)
    with pytest.raises(WebhookVerificationError):  # a body changed on the way
        Webhook(secret).verify(body.replace(b'"n":1', b'"n":2'), headers)
    # During a rotation both secrets sign: either one verifies.
    both = {
        **headers,
        "webhook-signature": f"{sign(secret, event_id, now, body)} {sign(other, event_id, now, body)}",
    }
    assert Webhook(other).verify(body, both) and Webhook(secret).verify(body, both)


def test_the_body_is_the_event_with_its_data_as_stored() -> None:
    at = dt.datetime(2026, 12, 3, 23, 59, 1, 250000, tzinfo=dt.UTC)
    body = json.loads(event_body(uuid.UUID(int=1), "ticket.updated", at, '{"title":"Help","count":3}'))
    assert body == {
        "id": "00000000-0000-0000-0000-000000000001",
        "type": "ticket.updated",
        "timestamp": "2026-12-03T23:59:01.250Z",
        "data": {"title": "Help", "count": 3},
    }


def test_subscriptions_name_a_type_a_resources_types_or_every_type() -> None:
    assert all(is_subscription(name) for name in EVENT_TYPES)
    assert is_subscription("*") and is_subscription("lead.*") and is_subscription("form_submission.*")
    for bad in ("lead", "lead.exploded", "*.created", "leads.*", "", "lead.**"):
        assert not is_subscription(bad), bad
    assert subscribes(["lead.*"], "lead.deleted") and not subscribes(["lead.*"], "account.created")
    assert subscribes(["*"], "channel.updated") and subscribes(["ticket.created"], "ticket.created")
    assert not subscribes(["ticket.created"], "ticket.updated")
