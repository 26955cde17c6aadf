"""Stripe's HTTP API, as this service uses it: Checkout Sessions ("checkouts") and refunds, with
idempotency keys so that a double click, a retry or a second worker never charges or refunds twice."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import stripe

from pysvc import pages
from pysvc.errors import BackendUnavailable, CheckoutNotFound, StripeNotConfigured, StripeRefused
from pysvc.settings import Settings
from pysvc.store import Intake, Plan

T = TypeVar("T")

# The API version this code is written against: the `stripe` library's own pin (pyproject bounds the
# library to one major version, so an upgrade is a deliberate change). Set the same version on the
# webhook endpoint in Stripe's dashboard; events of another version are still read, and flagged.
API_VERSION = stripe.api_version


@dataclass(frozen=True)
class OpenedCheckout:
    id: str
    url: str
    expires_at: int


class StripeApi:
    def __init__(self, settings: Settings) -> None:
        self.public_base_url = settings.public_base_url.rstrip("/")
        self.app_url = settings.app_url
        self.checkout_expiry_seconds = settings.checkout_expiry_minutes * 60
        self.webhook_secret = (
            settings.stripe_webhook_secret.get_secret_value() if settings.stripe_webhook_secret else None
        )
        self.client: stripe.StripeClient | None = None
        if settings.stripe_secret_key:
            self.client = stripe.StripeClient(
                settings.stripe_secret_key.get_secret_value(),
                base_addresses={"api": settings.stripe_api_base} if settings.stripe_api_base else None,
                http_client=stripe.HTTPXClient(),
                max_network_retries=2,
                stripe_version=API_VERSION,
            )

    def require_client(self) -> stripe.StripeClient:
        if self.client is None:
            raise StripeNotConfigured("STRIPE_SECRET_KEY is not set: paid plans are unavailable")
        return self.client

    def require_webhook_secret(self) -> str:
        if not self.webhook_secret:
            raise StripeNotConfigured("STRIPE_WEBHOOK_SECRET is not set: webhooks cannot be verified")
        return self.webhook_secret

    async def create_checkout(self, intake: Intake, plan: Plan, attempt: int) -> OpenedCheckout:
        """A Checkout Session for the intake's plan at the catalog's price, closing by itself after
        the configured time. `attempt` counts the intake's earlier checkouts: a retry of the same
        attempt gets the same checkout back, a new attempt (after expiry) a fresh one."""
        expires_at = int(time.time()) + self.checkout_expiry_seconds
        params: dict[str, Any] = {
            "mode": "payment",
            "client_reference_id": str(intake.customer_user_id),
            "line_items": [{
                "quantity": 1,
                "price_data": {
                    "currency": plan.currency,
                    "unit_amount": plan.price_cents,
                    "product_data": {"name": f"{plan.session_type.value.title()} consultation ({plan.code})"},
                },
            }],
            "metadata": checkout_metadata(intake, plan),
            "expires_at": expires_at,
            "success_url": pages.checkout_success(self.public_base_url),
            "cancel_url": self.app_url + pages.waiver(plan.code, intake.id),
        }
        checkout = await _call(
            self.require_client().v1.checkout.sessions.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": f"checkout-{intake.id}-{attempt}"},
            )
        )
        return OpenedCheckout(str(checkout.id), str(checkout.url), int(checkout.expires_at or expires_at))

    async def completed_checkouts(self, since: int) -> AsyncIterator[dict[str, Any]]:
        """Every complete Checkout Session created since `since` (epoch seconds), all pages."""
        page = await _call(self.require_client().v1.checkout.sessions.list_async(
            {"created": {"gte": since}, "status": "complete", "limit": 100}))
        async for checkout in page.auto_paging_iter():
            yield checkout.to_dict()

    async def retrieve_checkout(self, checkout_id: str) -> dict[str, Any]:
        try:
            checkout = await _call(self.require_client().v1.checkout.sessions.retrieve_async(checkout_id))
        except StripeRefused as exc:
            if isinstance(exc.__cause__, stripe.InvalidRequestError) and exc.__cause__.code == "resource_missing":
                raise CheckoutNotFound() from exc
            raise
        assert checkout.last_response is not None
        return dict(json.loads(checkout.last_response.body))

    async def refund(self, payment_intent: str, checkout_id: str, reason: str, *, idempotency_key: str) -> str:
        refund = await _call(
            self.require_client().v1.refunds.create_async(
                {
                    "payment_intent": payment_intent,
                    "reason": "requested_by_customer",
                    "metadata": {"checkout_session_id": checkout_id, "reason": reason},
                },
                {"idempotency_key": idempotency_key},
            )
        )
        return str(refund.id)

    async def expire_checkout(self, checkout_id: str, idempotency_key: str) -> str:
        """Close an open checkout so that it can no longer be paid."""
        checkout = await _call(self.require_client().v1.checkout.sessions.expire_async(
            checkout_id, options={"idempotency_key": idempotency_key}))
        return str(checkout.id)


async def _call(call: Awaitable[T]) -> T:
    try:
        return await call
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise BackendUnavailable(f"Stripe unavailable: {exc.user_message or exc}") from exc
    except stripe.InvalidRequestError as exc:
        raise StripeRefused(f"Stripe refused the request: {exc.user_message or exc}") from exc
    except stripe.StripeError as exc:
        raise BackendUnavailable(f"Stripe error: {exc.user_message or exc}") from exc


def checkout_metadata(intake: Intake, plan: Plan) -> dict[str, str]:
    """What fulfilment needs back from Stripe. Stripe metadata values are strings."""
    return {
        "customer_id": str(intake.customer_user_id),
        "intake_id": str(intake.id),
        "plan": plan.code,
        "session_type": plan.session_type.value,
        "urgent": str(intake.urgent).lower(),
        "is_specialist": str(intake.is_specialist).lower(),
        "preferred_mechanic_id": str(intake.preferred_mechanic_id or ""),
        "routing_type": intake.routing_type.value,
    }
