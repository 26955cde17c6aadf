"""Paid checkouts become sessions: the one idempotent fulfilment both the webhook and the landing
page run. A checkout that was paid but can never be honoured is refunded."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pysvc.enums import InboxStatus, PaymentMethod
from pysvc.errors import ActiveSessionExists, ApiError, IntakeAlreadyUsed, InvalidRequest
from pysvc.factory import CreateSessionParams, CreateSessionResult, SessionFactory
from pysvc.outbox import Outbox

log = logging.getLogger(__name__)

# Refusals that mean "paid, but this can never be honoured": the money goes back.
REFUND_ON: tuple[type[ApiError], ...] = (ActiveSessionExists, IntakeAlreadyUsed)


@dataclass(frozen=True)
class Outcome:
    """What fulfilling one checkout came to. `pending`: the payment has not settled yet."""

    status: InboxStatus | str
    result: CreateSessionResult | None = None
    detail: dict[str, Any] = field(default_factory=dict)


PENDING = "pending"


class Fulfilment:
    def __init__(self, factory: SessionFactory, outbox: Outbox) -> None:
        self.factory = factory
        self.outbox = outbox

    async def fulfil(self, checkout: dict[str, Any]) -> Outcome:
        """Create the session a paid checkout bought; refund what cannot be honoured."""
        if checkout.get("payment_status") not in ("paid", "no_payment_required"):
            return Outcome(PENDING, detail={"reason": "payment not settled yet"})
        metadata = checkout.get("metadata") or {}
        if not isinstance(metadata, dict):
            metadata = {}
        try:
            params = CreateSessionParams.parse({
                "customer_id": metadata.get("customer_id"),
                "intake_id": metadata.get("intake_id"),
                "plan": metadata.get("plan"),
                "type": metadata.get("session_type") or None,
                "payment_method": PaymentMethod.stripe,
                "stripe_session_id": checkout.get("id"),
                "amount_paid": checkout.get("amount_total"),
                "currency": checkout.get("currency"),
                "customer_email": _email(checkout),
                "urgent": metadata.get("urgent") == "true",
                "is_specialist": metadata.get("is_specialist") == "true",
                "preferred_mechanic_id": metadata.get("preferred_mechanic_id") or None,
                "routing_type": metadata.get("routing_type") or "broadcast",
                "payment_intent": _text(checkout.get("payment_intent")),
            })
            if checkout.get("client_reference_id") not in (None, str(params.customer_id)):
                raise InvalidRequest("client_reference_id does not match metadata")
            result = await self.factory.create_session_record(params)
        except REFUND_ON as exc:
            return await self._refund(checkout, exc)
        except ApiError as exc:
            if exc.http_status >= 500:
                raise
            log.warning("checkout %s cannot be fulfilled: %s %s", checkout.get("id"), exc.code, exc)
            return Outcome(InboxStatus.failed, detail={"reason": exc.code, "message": exc.detail})
        return Outcome(InboxStatus.processed, result=result)

    async def _refund(self, checkout: dict[str, Any], refusal: ApiError) -> Outcome:
        """The refund goes through the outbox: claimed once per checkout in the database, then sent."""
        detail: dict[str, Any] = {"reason": refusal.code}
        if isinstance(refusal, ActiveSessionExists):
            detail["activeSessionId"] = refusal.session_id
        request = await self.outbox.enqueue(
            "refund", str(checkout["id"]), reason=refusal.code, payment_intent=_text(checkout.get("payment_intent")),
        )
        await self.outbox.run_once()  # send it now; a failure here stays queued for the worker
        log.info("checkout %s refund requested (%s): outbox %s", checkout.get("id"), refusal.code, request["id"])
        return Outcome(InboxStatus.refunded, detail={**detail, "refund_request": request["id"]})


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _email(checkout: dict[str, Any]) -> Any:
    details = checkout.get("customer_details")
    return details.get("email") if isinstance(details, dict) else None
