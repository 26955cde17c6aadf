"""Stripe's webhook: the signature checked on the raw body, every event id recorded once in the
inbox (`stripe_events`), then handled by the handler registered for its type:
record -> handle -> finish, with attempts and the last error kept on the row."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

import stripe

from pysvc.enums import InboxStatus
from pysvc.errors import ApiError, BadPayload, BadSignature, MissingSignature
from pysvc.fulfilment import PENDING, Fulfilment, Outcome
from pysvc.postgrest import Rpc
from pysvc.schemas import WebhookAck

log = logging.getLogger(__name__)
EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,250}")  # as stripe_events.id's CHECK

Handler = Callable[[dict[str, Any]], Awaitable[Outcome]]


def verify(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event, if `payload` is signed by Stripe with `secret`; BadWebhook (400) otherwise."""
    if not signature:
        raise MissingSignature()
    try:
        stripe.WebhookSignature.verify_header(payload.decode(), signature, secret, stripe.Webhook.DEFAULT_TOLERANCE)
        data = json.loads(payload)
    except stripe.SignatureVerificationError as exc:
        raise BadSignature(f"signature verification failed: {exc.user_message or exc}") from exc
    except ValueError as exc:
        raise BadPayload() from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str) or not 0 < len(data["type"]) <= 100:
        raise BadPayload("event has no type")
    if not isinstance(data.get("id"), str) or not EVENT_ID.fullmatch(data["id"]):
        raise BadPayload("event has no valid id")
    return data


class Webhook:
    def __init__(self, rpc: Rpc, fulfilment: Fulfilment) -> None:
        self.rpc = rpc
        self.fulfilment = fulfilment
        self.handlers: dict[str, Handler] = {
            "checkout.session.completed": self._fulfil,
            "checkout.session.async_payment_succeeded": self._fulfil,
            "checkout.session.async_payment_failed": self._payment_failed,
        }

    async def handle(self, event: dict[str, Any]) -> WebhookAck:
        """Process a verified event once; deliveries of a finished event are only acknowledged."""
        recorded = await self.rpc.call("record_stripe_event", {
            "event_id": event["id"], "event_type": event["type"],
            "livemode": event.get("livemode") is True, "payload": event,
        })
        status = InboxStatus(recorded["status"])
        if status is not InboxStatus.received:
            return WebhookAck(status=status, duplicate=True)

        handler = self.handlers.get(event["type"], _ignore)
        try:
            outcome = await handler(event)
        except ApiError as exc:
            if exc.http_status >= 500:  # transient: stays `received` for Stripe's retry
                await self._finish(event, InboxStatus.received, Outcome(InboxStatus.received), error=str(exc))
                raise
            outcome = Outcome(InboxStatus.failed, detail={"reason": exc.code, "message": exc.detail})
        await self._finish(event, InboxStatus(outcome.status), outcome)
        session_id = outcome.result.session_id if outcome.result else None
        return WebhookAck(status=InboxStatus(outcome.status), session_id=session_id)

    async def _finish(self, event: dict[str, Any], status: InboxStatus, outcome: Outcome, error: str | None = None,
                      ) -> None:
        detail = {**outcome.detail, **({"created": outcome.result.created} if outcome.result else {})}
        await self.rpc.call("finish_stripe_event", {
            "event_id": event["id"], "status": status.value, "outcome": detail,
            "checkout_session_id": _checkout_id(event),
            "session_id": str(outcome.result.session_id) if outcome.result else None,
            "error": error,
        })

    async def _fulfil(self, event: dict[str, Any]) -> Outcome:
        checkout = _object(event)
        if _checkout_id(event) is None:
            return Outcome(InboxStatus.failed, detail={"reason": "not a checkout.session object"})
        outcome = await self.fulfilment.fulfil(checkout)
        if outcome.status == PENDING:
            return Outcome(InboxStatus.ignored, detail=outcome.detail)
        return outcome

    async def _payment_failed(self, event: dict[str, Any]) -> Outcome:
        return Outcome(InboxStatus.failed, detail={"reason": "async payment failed"})


async def _ignore(event: dict[str, Any]) -> Outcome:
    return Outcome(InboxStatus.ignored, detail={"reason": "not handled"})


def _object(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def _checkout_id(event: dict[str, Any]) -> str | None:
    obj = _object(event)
    checkout_id = obj.get("id")
    return checkout_id if obj.get("object") == "checkout.session" and isinstance(checkout_id, str) else None
