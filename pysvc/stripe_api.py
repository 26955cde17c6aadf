"""Stripe's HTTP API, as this service uses it: Checkout Sessions ("checkouts") and refunds, with
idempotency keys so that a double click, a retry or a second worker never charges or refunds twice."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

import stripe

from pysvc import pages
from pysvc.errors import BackendUnavailable, CheckoutNotFound, StripeBusy, StripeNotConfigured, StripeRefused
from pysvc.settings import Settings

T = TypeVar("T")

# The API version this code is written against: the `stripe` library's own pin (pyproject bounds the
# library to one major version, so an upgrade is a deliberate change). Set the same version on the
# webhook endpoint in Stripe's dashboard; events of another version are still read, and flagged.
API_VERSION = stripe.api_version
STRIPE_TIMEOUT_SECONDS = 20.0
STRIPE_RETRIES = 2
# Longer than one call can take with the library's own retries and their back-off (at most 2 s
# each), so a second worker never claims a request the first is still sending.
REQUEST_LEASE_SECONDS = int(STRIPE_TIMEOUT_SECONDS * (STRIPE_RETRIES + 1) + 2 * STRIPE_RETRIES) * 2


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
                http_client=stripe.HTTPXClient(timeout=STRIPE_TIMEOUT_SECONDS),
                max_network_retries=STRIPE_RETRIES,
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

    def checkout_urls(self, plan: str, intake_id: UUID) -> tuple[str, str]:
        """Where Stripe sends the customer after paying (our landing page) and after giving up (the waiver)."""
        return pages.checkout_success(self.public_base_url), self.app_url + pages.waiver(plan, intake_id)

    async def create_checkout(self, request: dict[str, Any], idempotency_key: str) -> OpenedCheckout:
        """Send a payment's stored Checkout request, exactly as stored (public.open_checkout wrote it):
        a retry, a second click or another instance sends the identical request with the same key."""
        checkout = await _call(
            self.require_client().v1.checkout.sessions.create_async(
                request,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            )
        )
        return OpenedCheckout(str(checkout.id), str(checkout.url), int(checkout.expires_at))

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

    async def refund(self, params: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        """Send a stored refund request (public.stripe_outbox params) as stored; Stripe's refund object."""
        refund = await _call(
            self.require_client().v1.refunds.create_async(params, {"idempotency_key": idempotency_key})  # type: ignore[arg-type]
        )
        return refund.to_dict()

    async def refunds_of(self, payment_intent: str) -> list[dict[str, Any]]:
        """Every refund of a payment intent, all pages (a Charge lists none unless expanded)."""
        page = await _call(self.require_client().v1.refunds.list_async(
            {"payment_intent": payment_intent, "limit": 100}))
        return [refund.to_dict() async for refund in page.auto_paging_iter()]

    async def expire_checkout(self, checkout_id: str, idempotency_key: str) -> str:
        """Close an open checkout so that it can no longer be paid."""
        checkout = await _call(self.require_client().v1.checkout.sessions.expire_async(
            checkout_id, options={"idempotency_key": idempotency_key}))
        return str(checkout.id)


async def _call(call: Awaitable[T]) -> T:
    try:
        return await call
    except stripe.IdempotencyError as exc:
        if exc.http_status == 409 or exc.code == "idempotency_key_in_use":  # the first request still runs
            raise StripeBusy(f"Stripe is still processing this request: {exc.user_message or exc}") from exc
        # One key, two different requests: a bug of ours (requests are stored before sending), never retried.
        raise StripeRefused(f"Stripe refused the idempotency key: {exc.user_message or exc}") from exc
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        raise BackendUnavailable(f"Stripe unavailable: {exc.user_message or exc}") from exc
    except stripe.InvalidRequestError as exc:
        if exc.http_status == 409 or exc.code == "idempotency_key_in_use":
            raise StripeBusy(f"Stripe is still processing this request: {exc.user_message or exc}") from exc
        raise StripeRefused(f"Stripe refused the request: {exc.user_message or exc}") from exc
    except stripe.StripeError as exc:
        if exc.http_status == 409:
            raise StripeBusy(f"Stripe is still processing this request: {exc.user_message or exc}") from exc
        raise BackendUnavailable(f"Stripe error: {exc.user_message or exc}") from exc
