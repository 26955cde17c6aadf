"""Paid checkouts become sessions: the one idempotent fulfilment the webhook, the landing page and
`pysvc stripe reconcile` run. The database decides with the payment's own record (public.payments):
a paid payment becomes exactly one session, or its full refund is requested in the same transaction;
a payment already refunded never becomes a session, whatever Stripe's Checkout still says."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from pysvc.enums import InboxStatus, PaymentMethod
from pysvc.errors import ApiError
from pysvc.factory import CreateSessionParams, CreateSessionResult, SessionFactory
from pysvc.outbox import Outbox
from pysvc.postgrest import Rpc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What fulfilling one checkout came to. `pending`: the payment has not settled yet."""

    status: InboxStatus | str
    result: CreateSessionResult | None = None
    detail: dict[str, Any] = field(default_factory=dict)


PENDING = "pending"


class Fulfilment:
    def __init__(self, factory: SessionFactory, outbox: Outbox, rpc: Rpc) -> None:
        self.factory = factory
        self.outbox = outbox
        self.rpc = rpc

    async def fulfil(self, checkout: dict[str, Any]) -> Outcome:
        """Create the session a paid checkout bought, or refund it; record an unpaid one's state."""
        metadata = metadata_of(checkout)
        if checkout.get("payment_status") not in ("paid", "no_payment_required"):
            if checkout.get("status") == "complete":  # an async method: the bank has not cleared it yet
                await self.record_status(checkout, "processing")
            return Outcome(PENDING, detail={"reason": "payment not settled yet"})
        try:
            params = CreateSessionParams.parse({
                "customer_id": metadata.get("customer_id"),
                "intake_id": metadata.get("intake_id"),
                "plan": metadata.get("plan"),
                "payment_method": PaymentMethod.stripe,
                "stripe_session_id": checkout.get("id"),
                "amount_paid": checkout.get("amount_total"),
                "currency": checkout.get("currency"),
                "payment_intent": _text(checkout.get("payment_intent")),
                "payment_id": metadata.get("payment_id") or None,
            })
            result = await self.factory.create_session_record(params)
        except ApiError as exc:
            if exc.http_status >= 500:
                raise
            log.warning("checkout %s cannot be fulfilled: %s %s", checkout.get("id"), exc.code, exc)
            return Outcome(InboxStatus.failed, detail={"reason": exc.code, "message": exc.detail})
        if result.session_id is not None:
            return Outcome(InboxStatus.processed, result=result)
        return await self._refunded(checkout, result)

    async def record_status(self, checkout: dict[str, Any], status: str) -> dict[str, Any]:
        """An unpaid Checkout's news (processing, expired, payment_failed) for its payment."""
        result: dict[str, Any] = await self.rpc.call("record_checkout_status", {
            "checkout_session_id": checkout.get("id"), "status": status, "payment_id": payment_id_of(checkout),
        })
        return result

    async def _refunded(self, checkout: dict[str, Any], result: CreateSessionResult) -> Outcome:
        """No session: the money goes (or went) back. A refund decided just now is sent at once, alone."""
        detail: dict[str, Any] = {"reason": result.reason or result.payment_status,
                                  "payment_status": result.payment_status}
        if result.details and result.details.get("activeSessionId"):
            detail["activeSessionId"] = result.details["activeSessionId"]
        if result.refund and isinstance(result.refund.get("outbox_id"), int):
            detail["refund_request"] = result.refund["outbox_id"]
            try:
                await self.outbox.send_one(result.refund["outbox_id"])
            except ApiError as exc:  # decided and stored: the worker sends it later
                log.warning("refund request %s not sent now: %s", result.refund["outbox_id"], exc)
            log.info("checkout %s refund requested (%s): outbox %s", checkout.get("id"), result.reason,
                     result.refund["outbox_id"])
        return Outcome(InboxStatus.refunded, detail=detail)


def metadata_of(obj: dict[str, Any]) -> dict[str, Any]:
    """A Stripe object's metadata (strings this service wrote), or {} for anything else."""
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def payment_id_of(obj: dict[str, Any]) -> str | None:
    """The payment this service put in a Checkout's or refund's metadata, when it is a payment id."""
    value = metadata_of(obj).get("payment_id")
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
