"""Plans paid through Stripe (the official SDK): checkout and portal pages, and Stripe's events applied
to a user's subscription and plan, once each and in the order Stripe made them."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import stripe
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common import config
from services.common.db import Database
from services.common.errors import Conflict, FieldError, Unavailable, ValidationError
from services.common.fields import utcnow
from services.common.plans import DEFAULT_PLAN
from services.workflows import repository
from services.workflows.models import billing_accounts, stripe_events, users
from services.workflows.workflows import existing_user

PRICE_KEYS = ("pro_monthly", "pro_annual", "team_monthly", "team_annual")
# Stripe statuses under which the plan paid for applies (past_due: Stripe is still retrying the card).
PAYING = ("active", "trialing", "past_due")
NOT_CONFIGURED = (
    "Billing is not set up on this platform (HYDRA_STRIPE_SECRET_KEY); "
    "an operator sets plans with `hydractl users set-plan`."
)
_STRIPE_DOWN = "Stripe could not be reached; nothing was charged. Retry safe."


@dataclass(frozen=True)
class StripeSettings:
    """Stripe's keys and the price of each plan (HYDRA_STRIPE_*); api_base for a local stand-in."""

    secret_key: str
    webhook_secret: str
    prices: Mapping[str, str] = field(default_factory=dict)  # pro_monthly -> price_...
    api_base: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self | None:
        secret_key = env.get("HYDRA_STRIPE_SECRET_KEY")
        if not secret_key:
            return None
        webhook_secret = env.get("HYDRA_STRIPE_WEBHOOK_SECRET")
        if not webhook_secret:
            raise config.ConfigError("HYDRA_STRIPE_SECRET_KEY needs HYDRA_STRIPE_WEBHOOK_SECRET (whsec_...)")
        prices = {}
        for item in filter(None, (env.get("HYDRA_STRIPE_PRICES") or "").split(",")):
            key, _, price = item.strip().partition("=")
            if key not in PRICE_KEYS or not price:
                raise config.ConfigError(
                    f"HYDRA_STRIPE_PRICES takes {', '.join(PRICE_KEYS)} as key=price_..., not {item!r}"
                )
            prices[key] = price
        return cls(secret_key, webhook_secret, prices, env.get("HYDRA_STRIPE_API_BASE") or None)

    def plan_of(self, price_id: str) -> str | None:
        """The plan a Stripe price pays for."""
        for key, price in self.prices.items():
            if price == price_id:
                return key.partition("_")[0]
        return None


@dataclass(frozen=True)
class Applied:
    """What became of a Stripe event."""

    duplicate: bool


class Billing:
    """Subscriptions through Stripe; without it configured, plans are the operator's to set."""

    def __init__(self, db: Database, settings: StripeSettings | None, logger: logging.Logger) -> None:
        self._db = db
        self._settings = settings
        self._log = logger
        self._client = (
            stripe.StripeClient(
                settings.secret_key,
                base_addresses={"api": settings.api_base} if settings.api_base else None,
                http_client=stripe.HTTPXClient(),
                max_network_retries=2,
            )
            if settings is not None
            else None
        )

    async def subscription(self, user_id: uuid.UUID) -> dict[str, Any]:
        async with self._db.read() as conn:
            user = await existing_user(conn, user_id)
            account = await _account(conn, user_id)
        return {
            "plan": user.plan,
            "status": account.status if account else "none",
            "customer_id": account.customer_id if account else None,
            "subscription_id": account.subscription_id if account else None,
            "current_period_start": account.current_period_start if account else None,
            "current_period_end": account.current_period_end if account else None,
            "cancel_at_period_end": bool(account and account.cancel_at_period_end),
        }

    async def checkout(self, user_id: uuid.UUID, price_key: str, success_url: str, cancel_url: str) -> str:
        """A Checkout page for the plan at `price_key`, for the user's own Stripe customer."""
        settings, client = self._configured()
        price = settings.prices.get(price_key)
        if price is None:
            raise ValidationError(
                FieldError(("body", "priceId"), f"{price_key} is not on sale here", "value_error")
            )
        customer = await self._customer(user_id, client)
        try:
            session = await client.v1.checkout.sessions.create_async(
                {
                    "mode": "subscription",
                    "customer": customer,
                    "client_reference_id": str(user_id),
                    "line_items": [{"price": price, "quantity": 1}],
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                    "metadata": {"user_id": str(user_id)},
                }
            )
        except stripe.StripeError as error:
            raise self._unavailable(error) from None
        return str(session.url)

    async def portal(self, user_id: uuid.UUID, return_url: str) -> str:
        _settings, client = self._configured()
        async with self._db.read() as conn:
            await existing_user(conn, user_id)
            account = await _account(conn, user_id)
        if account is None:
            raise Conflict("There is no subscription to manage yet: start one with /v1/billing/checkout.")
        try:
            session = await client.v1.billing_portal.sessions.create_async(
                {"customer": account.customer_id, "return_url": return_url}
            )
        except stripe.StripeError as error:
            raise self._unavailable(error) from None
        return str(session.url)

    async def receive(self, payload: bytes, signature: str) -> Applied:
        """Applies a Stripe event whose signature verifies; one seen before changes nothing."""
        settings, client = self._configured()
        try:
            event = client.construct_event(payload, signature, settings.webhook_secret)
        except (stripe.SignatureVerificationError, ValueError):
            raise ValidationError(
                FieldError(
                    ("header", "stripe-signature"), "The Stripe signature does not verify", "value_error"
                )
            ) from None
        async with self._db.transaction() as conn:
            seen = await conn.execute(select(stripe_events.c.id).where(stripe_events.c.id == event.id))
            if seen.first() is not None:
                return Applied(duplicate=True)
            await conn.execute(
                insert(stripe_events).values(id=event.id, type=event.type, received_at=utcnow())
            )
            if event.type.startswith("customer.subscription."):
                made = dt.datetime.fromtimestamp(event.created, dt.UTC)
                await self._apply_subscription(conn, event.data.object.to_dict(), made, settings)
        return Applied(duplicate=False)

    async def cancel_for_deletion(self, user_id: uuid.UUID) -> None:
        """Ends a paying subscription at Stripe before the account goes (no charge after deletion)."""
        async with self._db.read() as conn:
            account = await _account(conn, user_id)
        if account is None or not account.subscription_id or account.status not in PAYING:
            return
        _settings, client = self._configured()
        try:
            await client.v1.subscriptions.cancel_async(account.subscription_id)
        except stripe.InvalidRequestError as error:
            if error.http_status != 404:  # already gone at Stripe
                raise self._unavailable(error) from None
        except stripe.StripeError as error:
            raise self._unavailable(error) from None

    async def _apply_subscription(
        self, conn: AsyncConnection, subscription: dict[str, Any], made: dt.datetime, settings: StripeSettings
    ) -> None:
        account = (
            await conn.execute(
                select(billing_accounts).where(billing_accounts.c.customer_id == subscription.get("customer"))
            )
        ).first()
        if account is None:
            self._log.warning(
                "stripe event for an unknown customer", extra={"customer": subscription.get("customer")}
            )
            return
        last = account.last_event_at
        if last is not None and (last if last.tzinfo else last.replace(tzinfo=dt.UTC)) > made:
            return  # an older picture of the subscription than the one applied
        items = (subscription.get("items") or {}).get("data") or [{}]
        item = items[0]
        status = str(subscription.get("status", ""))
        plan = settings.plan_of(str((item.get("price") or {}).get("id", "")))
        await conn.execute(
            update(billing_accounts)
            .where(billing_accounts.c.user_id == account.user_id)
            .values(
                subscription_id=subscription.get("id"),
                plan=plan,
                status=status,
                # Newer Stripe API versions keep the period on the subscription's items.
                current_period_start=_time(
                    subscription.get("current_period_start") or item.get("current_period_start")
                ),
                current_period_end=_time(
                    subscription.get("current_period_end") or item.get("current_period_end")
                ),
                cancel_at_period_end=bool(subscription.get("cancel_at_period_end")),
                last_event_at=made,
                updated_at=utcnow(),
            )
        )
        paid = plan if status in PAYING and plan is not None else DEFAULT_PLAN
        await conn.execute(
            update(users).where(users.c.id == account.user_id).values(plan=paid, updated_at=utcnow())
        )

    async def _customer(self, user_id: uuid.UUID, client: stripe.StripeClient) -> str:
        """The user's Stripe customer, made (and kept) on their first checkout."""
        async with self._db.read() as conn:
            user = await existing_user(conn, user_id)
            account = await _account(conn, user_id)
        if account is not None:
            return str(account.customer_id)
        try:
            customer = await client.v1.customers.create_async(
                {"email": user.email, "metadata": {"user_id": str(user_id)}}
            )
        except stripe.StripeError as error:
            raise self._unavailable(error) from None
        async with self._db.transaction() as conn:
            if await _account(conn, user_id) is None:
                await conn.execute(
                    insert(billing_accounts).values(
                        user_id=user_id,
                        customer_id=customer.id,
                        subscription_id=None,
                        plan=None,
                        status="none",
                        current_period_start=None,
                        current_period_end=None,
                        cancel_at_period_end=False,
                        last_event_at=None,
                        updated_at=utcnow(),
                    )
                )
            account = await _account(conn, user_id)
        return str(account.customer_id)

    def _configured(self) -> tuple[StripeSettings, stripe.StripeClient]:
        if self._settings is None or self._client is None:
            raise Unavailable(NOT_CONFIGURED)
        return self._settings, self._client

    def _unavailable(self, error: stripe.StripeError) -> Unavailable:
        self._log.warning(
            "stripe call failed", extra={"error": type(error).__name__, "status": error.http_status}
        )
        return Unavailable(_STRIPE_DOWN)


async def _account(conn: AsyncConnection, user_id: uuid.UUID) -> Any:
    return (await conn.execute(select(billing_accounts).where(billing_accounts.c.user_id == user_id))).first()


async def billing_records(conn: AsyncConnection, user_id: uuid.UUID) -> int:
    """How many billing records a user has (their account with Stripe, if any)."""
    return await repository.count(
        conn, select(billing_accounts.c.user_id).where(billing_accounts.c.user_id == user_id)
    )


def _time(value: Any) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(int(value), dt.UTC) if value else None
