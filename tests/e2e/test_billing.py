"""Billing (seed 002) through the real edge and the real Stripe client, against a local stand-in for
Stripe's API; webhook payloads signed as Stripe signs them."""

from __future__ import annotations

import time
import uuid

from tests.e2e.conftest import STRIPE_PRICES, STRIPE_WEBHOOK_SECRET, Edge, User
from tests.e2e.test_marketplace import create_workflow, error_of
from tests.support.stripe_server import FakeStripe, signed, subscription_event

CHECKOUT = {
    "priceId": "pro_monthly",
    "successUrl": "https://hydra.example/dashboard?upgraded=true",
    "cancelUrl": "https://hydra.example/pricing",
}


def send_event(
    edge: Edge, event: dict, *, secret: str = STRIPE_WEBHOOK_SECRET, at: int | None = None
) -> dict:
    payload, signature = signed(event, secret, at=at)
    response = edge.http.post(
        "/v1/billing/webhook",
        content=payload,
        headers={"content-type": "application/json", "stripe-signature": signature},
    )
    return {"status": response.status_code, "body": response.json()}


def customer_of(edge: Edge, user: User) -> str:
    return edge.http.get("/v1/billing/subscription", headers=user.bearer).json()["data"]["customerId"]


def subscribe(edge: Edge, user: User) -> str:
    response = edge.http.post("/v1/billing/checkout", json=CHECKOUT, headers=user.bearer)
    assert response.status_code == 200, response.text
    return customer_of(edge, user)


def test_checkout_and_portal_go_through_stripe_for_the_users_own_customer(
    edge: Edge, fake_stripe: FakeStripe
) -> None:
    user = edge.user()
    before = edge.http.get("/v1/billing/subscription", headers=user.bearer).json()
    assert before == {
        "success": True,
        "data": {
            "plan": "free",
            "status": "none",
            "customerId": None,
            "subscriptionId": None,
            "currentPeriodStart": None,
            "currentPeriodEnd": None,
            "cancelAtPeriodEnd": False,
        },
    }
    error_of(
        edge.http.post(
            "/v1/billing/portal", json={"returnUrl": "https://hydra.example/"}, headers=user.bearer
        ),
        409,
        "CONFLICT",
    )
    response = edge.http.post("/v1/billing/checkout", json=CHECKOUT, headers=user.bearer)
    assert response.status_code == 200, response.text
    url = response.json()["data"]["checkoutUrl"]
    assert url.startswith("https://checkout.stripe.test/c/pay/cs_test_")
    customer = customer_of(edge, user)
    assert customer.startswith("cus_")
    (session,) = [
        c
        for c in fake_stripe.made("POST", "/v1/checkout/sessions")
        if c.params["client_reference_id"] == [user.id]
    ]
    assert session.params["customer"] == [customer] and session.params["mode"] == ["subscription"]
    assert session.params["line_items[0][price]"] == [STRIPE_PRICES["pro_monthly"]]
    assert session.params["success_url"] == [CHECKOUT["successUrl"]]
    assert session.authorization == "Bearer sk_test_e2e"
    # A second checkout reuses the customer.
    edge.http.post("/v1/billing/checkout", json={**CHECKOUT, "priceId": "team_annual"}, headers=user.bearer)
    assert customer_of(edge, user) == customer
    customers = [
        c for c in fake_stripe.made("POST", "/v1/customers") if c.params.get("metadata[user_id]") == [user.id]
    ]
    assert len(customers) == 1

    portal = edge.http.post(
        "/v1/billing/portal", json={"returnUrl": "https://hydra.example/dashboard"}, headers=user.bearer
    )
    assert portal.json()["data"]["portalUrl"].startswith("https://billing.stripe.test/p/session/")
    for body in (
        {**CHECKOUT, "priceId": "gold_monthly"},
        {**CHECKOUT, "successUrl": "javascript:alert(1)"},
        {k: v for k, v in CHECKOUT.items() if k != "cancelUrl"},
        {**CHECKOUT, "extra": 1},
    ):
        error_of(
            edge.http.post("/v1/billing/checkout", json=body, headers=user.bearer), 400, "VALIDATION_ERROR"
        )
    error_of(
        edge.http.post("/v1/billing/portal", json={"returnUrl": "ftp://x"}, headers=user.bearer),
        400,
        "VALIDATION_ERROR",
    )


def test_stripe_down_is_a_503_that_charges_nothing(edge: Edge, fake_stripe: FakeStripe) -> None:
    user = edge.user()
    fake_stripe.down = True
    try:
        response = edge.http.post("/v1/billing/checkout", json=CHECKOUT, headers=user.bearer)
    finally:
        fake_stripe.down = False
    error = error_of(response, 503, "INTERNAL_ERROR")
    assert "Stripe" in error["message"] and "Retry safe" in error["message"]
    assert customer_of(edge, user) is None


def test_subscription_events_set_the_plan_once_each_and_in_stripes_order(edge: Edge) -> None:
    user = edge.user()
    customer = subscribe(edge, user)
    now = int(time.time())
    created = subscription_event(
        f"evt_{uuid.uuid4().hex}",
        "created",
        customer=customer,
        price=STRIPE_PRICES["pro_monthly"],
        created=now,
    )
    assert send_event(edge, created) == {
        "status": 200,
        "body": {"success": True, "data": {"received": True, "duplicate": False}},
    }
    data = edge.http.get("/v1/billing/subscription", headers=user.bearer).json()["data"]
    assert (
        data["plan"] == "pro" and data["status"] == "active" and data["subscriptionId"] == f"sub_{customer}"
    )
    assert data["currentPeriodStart"] and data["currentPeriodEnd"] and data["cancelAtPeriodEnd"] is False
    assert send_event(edge, created)["body"]["data"]["duplicate"] is True  # a redelivery changes nothing

    # The plan limits follow: pro's 100 requests a minute.
    time.sleep(0.6)
    assert edge.http.get("/v1/users/me", headers=user.bearer).headers["x-ratelimit-limit"] == "100"

    upgraded = subscription_event(
        f"evt_{uuid.uuid4().hex}",
        "updated",
        customer=customer,
        price=STRIPE_PRICES["team_annual"],
        created=now + 20,
    )
    stale = subscription_event(
        f"evt_{uuid.uuid4().hex}",
        "updated",
        customer=customer,
        price=STRIPE_PRICES["pro_annual"],
        created=now + 10,
    )
    send_event(edge, upgraded)
    assert send_event(edge, stale)["status"] == 200  # older than what was applied: received, ignored
    assert edge.http.get("/v1/users/me", headers=user.bearer).json()["data"]["plan"] == "team"
    cancelled = subscription_event(
        f"evt_{uuid.uuid4().hex}",
        "deleted",
        customer=customer,
        price=STRIPE_PRICES["team_annual"],
        status="canceled",
        created=now + 30,
    )
    send_event(edge, cancelled)
    data = edge.http.get("/v1/billing/subscription", headers=user.bearer).json()["data"]
    assert (data["plan"], data["status"]) == ("free", "canceled")


def test_forged_or_stale_webhooks_change_nothing(edge: Edge) -> None:
    user = edge.user()
    customer = subscribe(edge, user)
    event = subscription_event(
        f"evt_{uuid.uuid4().hex}", "created", customer=customer, price=STRIPE_PRICES["team_monthly"]
    )
    for secret, at in (("whsec_guess", None), (STRIPE_WEBHOOK_SECRET, int(time.time()) - 3600)):
        result = send_event(edge, event, secret=secret, at=at)
        assert result["status"] == 400 and result["body"]["error"]["code"] == "VALIDATION_ERROR"
    unsigned = edge.http.post(
        "/v1/billing/webhook", content=b"{}", headers={"content-type": "application/json"}
    )
    error_of(unsigned, 400, "VALIDATION_ERROR")
    assert edge.http.get("/v1/users/me", headers=user.bearer).json()["data"]["plan"] == "free"
    other = send_event(
        edge,
        subscription_event(f"evt_{uuid.uuid4().hex}", "created", customer="cus_unknown", price="price_x"),
    )
    assert other["status"] == 200  # received (Stripe stops retrying), applied to no one


def test_deleting_an_account_cancels_its_paid_subscription_first(edge: Edge, fake_stripe: FakeStripe) -> None:
    user = edge.user()
    create_workflow(edge, user)
    customer = subscribe(edge, user)
    send_event(
        edge,
        subscription_event(
            f"evt_{uuid.uuid4().hex}", "created", customer=customer, price=STRIPE_PRICES["pro_monthly"]
        ),
    )
    fake_stripe.down = True
    try:
        refused = edge.http.delete("/v1/users/me", headers=user.bearer)
    finally:
        fake_stripe.down = False
    error_of(refused, 503, "INTERNAL_ERROR")
    assert (
        edge.http.get("/v1/users/me", headers=user.bearer).json()["data"]["workflowCount"] == 1
    )  # nothing deleted
    deleted = edge.http.delete("/v1/users/me", headers=user.bearer).json()["data"]
    assert deleted["stats"]["billingRecords"] == 1 and deleted["stats"]["workflows"] == 1
    assert fake_stripe.made("DELETE", f"/v1/subscriptions/sub_{customer}")
