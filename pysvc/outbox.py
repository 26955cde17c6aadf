"""The Stripe outbox worker: sends what SQL decided (refunds, checkout expiries) to Stripe, once.

SQL cannot call Stripe, so cancel, expire and the webhook's paid-but-conflicted path write a row in
`stripe_outbox` in their own transaction (one per checkout and kind: the idempotency key). This
worker claims due rows (`for update skip locked`, with a lease, so any number of workers can run),
calls Stripe with the row's idempotency key, and finishes each: sent (Stripe's id kept), failed
(Stripe refused: the reason kept, never retried) or retry (Stripe unreachable: back-off).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from pysvc.errors import ApiError, StripeRefused
from pysvc.postgrest import Rpc
from pysvc.stripe_api import StripeApi

log = logging.getLogger(__name__)
MAX_BACKOFF_SECONDS = 600


class OutboxRequest(BaseModel):
    id: int
    kind: str
    checkout_session_id: str
    idempotency_key: str
    payment_intent: str | None = None
    reason: str | None = None
    attempts: int


class Outbox:
    def __init__(self, rpc: Rpc, stripe: StripeApi) -> None:
        self.rpc = rpc
        self.stripe = stripe

    async def enqueue(self, kind: str, checkout_id: str, *, payment_intent: str | None = None,
                      reason: str | None = None) -> dict[str, Any]:
        """Claim the side effect in the database first: however many callers race, one row."""
        row: dict[str, Any] = await self.rpc.call("enqueue_stripe_request", {
            "kind": kind, "checkout_session_id": checkout_id, "payment_intent": payment_intent, "reason": reason,
        })
        return row

    async def run_once(self, max_requests: int = 10) -> dict[str, int]:
        """Send what is due; counts by outcome. Without a Stripe key requests wait, untouched."""
        counts = {"sent": 0, "failed": 0, "retry": 0}
        if self.stripe.client is None:
            return counts
        claimed = await self.rpc.call("claim_stripe_requests", {"max_requests": max_requests})
        for row in claimed or []:
            request = OutboxRequest.model_validate(row)
            outcome = await self._send(request)
            counts[outcome] += 1
        return counts

    async def _send(self, request: OutboxRequest) -> str:
        try:
            if request.kind == "refund":
                stripe_id = await self._refund(request)
            else:
                stripe_id = await self.stripe.expire_checkout(request.checkout_session_id, request.idempotency_key)
        except ApiError as exc:
            if exc.http_status >= 500 and not isinstance(exc, StripeRefused):  # Stripe or we are down
                backoff = min(2 ** request.attempts * 5, MAX_BACKOFF_SECONDS)
                await self._finish(request, "retry", error=str(exc), retry_in=f"{backoff} seconds")
                return "retry"
            log.error("stripe request %s (%s) refused: %s", request.id, request.idempotency_key, exc)
            await self._finish(request, "failed", error=str(exc))
            return "failed"
        await self._finish(request, "sent", stripe_object_id=stripe_id)
        return "sent"

    async def _refund(self, request: OutboxRequest) -> str:
        payment_intent = request.payment_intent
        if payment_intent is None:  # fulfilled from the landing page: ask Stripe which payment it was
            checkout = await self.stripe.retrieve_checkout(request.checkout_session_id)
            payment_intent = checkout.get("payment_intent") if isinstance(checkout.get("payment_intent"), str) else None
        if payment_intent is None:
            raise StripeRefused("the checkout has no payment to refund")
        return await self.stripe.refund(payment_intent, request.checkout_session_id, request.reason or "refund",
                                        idempotency_key=request.idempotency_key)

    async def _finish(self, request: OutboxRequest, outcome: str, **fields: str | None) -> None:
        await self.rpc.call("finish_stripe_request", {"id": request.id, "outcome": outcome, **fields})
