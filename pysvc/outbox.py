"""The Stripe outbox worker: sends what SQL decided (refunds, checkout expiries) to Stripe, once.

SQL cannot call Stripe, so cancel, expire and a paid checkout that cannot become a session write a
row in `stripe_outbox` in their own transaction, with the request's exact parameters and its
idempotency key. This worker claims due rows (`for update skip locked`, leased for longer than one
Stripe call can take, so any number of workers can run), sends each row's parameters with its key,
and finishes it: sent (for a refund, Stripe's refund object, which the payment then follows), failed
(Stripe refused: kept with the reason, never retried) or retry (Stripe unreachable or still busy:
the database's back-off decides when). A row another worker finished first counts as done.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel

from pysvc.errors import ApiError, StripeRefused
from pysvc.postgrest import Rpc
from pysvc.stripe_api import REQUEST_LEASE_SECONDS, StripeApi

log = logging.getLogger(__name__)
LEASE = f"{REQUEST_LEASE_SECONDS} seconds"


class OutboxRequest(BaseModel):
    id: int
    kind: str
    checkout_session_id: str
    idempotency_key: str
    params: dict[str, Any]
    attempts: int


class Outbox:
    def __init__(self, rpc: Rpc, stripe: StripeApi) -> None:
        self.rpc = rpc
        self.stripe = stripe

    async def run_once(self, max_requests: int = 10) -> dict[str, int]:
        """Send what is due; counts by outcome. Without a Stripe key requests wait, untouched."""
        counts = {"sent": 0, "failed": 0, "retry": 0, "cancelled": 0}
        if self.stripe.client is None:
            return counts
        claimed = await self.rpc.call("claim_stripe_requests", {"max_requests": max_requests, "lease": LEASE})
        for row in claimed or []:
            counts[await self._send(OutboxRequest.model_validate(row))] += 1
        return counts

    async def send_one(self, request_id: int) -> str | None:
        """Send one request now (the one this caller just decided), if it is due and nobody holds it."""
        if self.stripe.client is None:
            return None
        row = await self.rpc.call("claim_stripe_request", {"request_id": request_id, "lease": LEASE})
        return None if row is None else await self._send(OutboxRequest.model_validate(row))

    async def _send(self, request: OutboxRequest) -> str:
        refund: dict[str, Any] | None = None
        try:
            if request.kind == "refund":
                refund = await self._refund(request)
                stripe_id = str(refund["id"])
            else:
                stripe_id = await self.stripe.expire_checkout(request.checkout_session_id, request.idempotency_key)
        except StripeRefused as exc:
            if request.kind == "expire_checkout":  # paid or expired meanwhile: nothing left to close
                await self._finish(request, "cancelled", error=str(exc))
                return "cancelled"
            log.error("stripe request %s (%s) refused: %s", request.id, request.idempotency_key, exc)
            await self._finish(request, "failed", error=str(exc))
            return "failed"
        except ApiError as exc:
            if exc.http_status < 500:
                raise
            await self._finish(request, "retry", error=str(exc))  # Stripe down or busy: the database's back-off
            return "retry"
        await self._finish(request, "sent", stripe_object_id=stripe_id, refund=refund)
        return "sent"

    async def _refund(self, request: OutboxRequest) -> dict[str, Any]:
        if not request.params.get("payment_intent"):
            raise StripeRefused("the payment has no payment intent to refund")
        return await self.stripe.refund(request.params, idempotency_key=request.idempotency_key)

    async def _finish(self, request: OutboxRequest, outcome: str, **fields: Any) -> None:
        await self.rpc.call("finish_stripe_request", {
            "id": request.id, "outcome": outcome, **{k: v for k, v in fields.items() if v is not None},
        })
