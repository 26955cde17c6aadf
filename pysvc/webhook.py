"""The paid path: Stripe's webhook (and the checkout success page) turn a paid Checkout Session
into a session through the factory. Signatures are verified on the raw body, every event id is
recorded once, and fulfilment is idempotent because the RPC is idempotent per checkout session."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import stripe

from pysvc.checkout import Checkout, StripeRefused
from pysvc.errors import ActiveSessionExists, InvalidSessionRequest, PysvcError
from pysvc.factory import AsyncSessionFactory, CreateSessionResult, PaymentMethod, parse_params
from pysvc.store import Store

log = logging.getLogger(__name__)

FULFIL_ON = ("checkout.session.completed", "checkout.session.async_payment_succeeded")
# Refusals that mean "paid, but this can never be honoured": the money goes back.
REFUND_ON = ("ACTIVE_SESSION_EXISTS", "INTAKE_ALREADY_USED")


class BadWebhook(PysvcError):
    """Unsigned, mis-signed, stale or unreadable: HTTP 400, nothing written."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Outcome:
    """What fulfilling one Checkout Session came to."""

    status: str  # processed | refunded | failed | pending
    result: CreateSessionResult | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def verify(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    if not signature:
        raise BadWebhook("missing Stripe-Signature header", "MISSING_SIGNATURE")
    try:
        stripe.WebhookSignature.verify_header(payload.decode(), signature, secret, stripe.Webhook.DEFAULT_TOLERANCE)
        data = json.loads(payload)
    except stripe.SignatureVerificationError as exc:
        raise BadWebhook(f"signature verification failed: {exc.user_message or exc}", "BAD_SIGNATURE") from exc
    except ValueError as exc:
        raise BadWebhook("body is not a Stripe event", "BAD_PAYLOAD") from exc
    if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("type"), str):
        raise BadWebhook("event has no id or type", "BAD_PAYLOAD")
    return data


class Fulfilment:
    def __init__(self, factory: AsyncSessionFactory, store: Store, checkout: Checkout) -> None:
        self.factory = factory
        self.store = store
        self.checkout = checkout

    async def fulfil(self, session: dict[str, Any]) -> Outcome:
        """Create the session a paid Checkout Session bought; refund what cannot be honoured."""
        if session.get("payment_status") not in ("paid", "no_payment_required"):
            return Outcome("pending", detail={"reason": "payment not settled yet"})
        metadata = session.get("metadata") or {}
        try:
            params = parse_params({
                "customer_id": metadata.get("customer_id"),
                "intake_id": metadata.get("intake_id"),
                "plan": metadata.get("plan"),
                "type": metadata.get("session_type") or None,
                "payment_method": PaymentMethod.stripe,
                "stripe_session_id": session.get("id"),
                "amount_paid": session.get("amount_total"),
                "currency": session.get("currency"),
                "customer_email": (session.get("customer_details") or {}).get("email"),
                "urgent": metadata.get("urgent") == "true",
                "is_specialist": metadata.get("is_specialist") == "true",
                "preferred_mechanic_id": metadata.get("preferred_mechanic_id") or None,
                "routing_type": metadata.get("routing_type") or "broadcast",
            })
            if session.get("client_reference_id") not in (None, str(params.customer_id)):
                raise InvalidSessionRequest("client_reference_id does not match metadata", code="CUSTOMER_MISMATCH")
            result = await self.factory.create_session_record(params)
        except ActiveSessionExists as exc:
            return await self._refund(session, exc.code, {"activeSessionId": exc.session_id})
        except InvalidSessionRequest as exc:
            if exc.code in REFUND_ON:
                return await self._refund(session, exc.code, {})
            log.warning("checkout %s cannot be fulfilled: %s %s", session.get("id"), exc.code, exc)
            return Outcome("failed", detail={"reason": exc.code, "message": exc.message})
        return Outcome("processed", result=result)

    async def _refund(self, session: dict[str, Any], reason: str, extra: dict[str, Any]) -> Outcome:
        payment_intent = session.get("payment_intent")
        if not isinstance(payment_intent, str):
            return Outcome("failed", detail={"reason": reason, "refund": "no payment intent to refund", **extra})
        try:
            refund_id = await self.checkout.refund(payment_intent, str(session["id"]), reason)
        except StripeRefused as exc:
            log.error("refund for checkout %s refused: %s", session.get("id"), exc)
            return Outcome("failed", detail={"reason": reason, "refund": str(exc), **extra})
        log.info("checkout %s refunded (%s): %s", session.get("id"), reason, refund_id)
        return Outcome("refunded", detail={"reason": reason, "refund_id": refund_id, **extra})

    async def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        """Process a verified event once; replays of a handled event are only acknowledged."""
        previous = await self.store.record_event(event)
        if previous is not None and previous != "received":
            return {"received": True, "duplicate": True, "status": previous}

        obj = (event.get("data") or {}).get("object") or {}
        checkout_id = obj.get("id") if obj.get("object") == "checkout.session" else None
        if event["type"] in FULFIL_ON and checkout_id:
            outcome = await self.fulfil(obj)
            status = "ignored" if outcome.status == "pending" else outcome.status
        elif event["type"] == "checkout.session.async_payment_failed":
            outcome, status = Outcome("failed", detail={"reason": "async payment failed"}), "failed"
        else:
            outcome, status = Outcome("ignored", detail={"reason": "not handled"}), "ignored"

        session_id: UUID | None = outcome.result.session_id if outcome.result else None
        detail = {**outcome.detail, **({"created": outcome.result.created} if outcome.result else {})}
        await self.store.finish_event(
            event["id"], status, detail,
            checkout_session_id=checkout_id, session_id=session_id,
        )
        return {"received": True, "status": status, **({"sessionId": str(session_id)} if session_id else {})}
