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

from pysvc.enums import CHECKOUT_ID, InboxStatus
from pysvc.errors import ApiError, BadPayload, BadSignature, MissingSignature
from pysvc.fulfilment import PENDING, Fulfilment, Outcome, payment_id_of
from pysvc.metrics import Metrics
from pysvc.postgrest import Rpc
from pysvc.schemas import WebhookAck
from pysvc.stripe_api import API_VERSION, StripeApi

log = logging.getLogger(__name__)
EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,250}")  # as stripe_events.id's CHECK
CHECKOUT = re.compile(CHECKOUT_ID.strip("^$"))
PAYMENT_INTENT = re.compile(r"pi_[A-Za-z0-9_]{1,250}")
MAX_DEPTH = 64  # Stripe's events nest a few levels; PostgreSQL refuses very deep jsonb

Handler = Callable[[dict[str, Any]], Awaitable[Outcome]]


def verify(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event, if `payload` is signed by Stripe with `secret` and is JSON the inbox can store;
    BadWebhook (400) otherwise, before anything is written."""
    if not signature:
        raise MissingSignature()
    try:
        text = payload.decode()
        stripe.WebhookSignature.verify_header(text, signature, secret, stripe.Webhook.DEFAULT_TOLERANCE)
    except stripe.SignatureVerificationError as exc:
        raise BadSignature(f"signature verification failed: {exc.user_message or exc}") from exc
    except UnicodeDecodeError as exc:
        raise BadPayload("body is not UTF-8") from exc
    data = parse(text)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str) or not 0 < len(data["type"]) <= 100:
        raise BadPayload("event has no type")
    if not isinstance(data.get("id"), str) or not EVENT_ID.fullmatch(data["id"]):
        raise BadPayload("event has no valid id")
    return data


def parse(text: str) -> Any:
    """JSON that PostgreSQL's jsonb also accepts: no NaN or Infinity, no lone surrogates, no NUL
    characters, bounded depth."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
        json.dumps(data, ensure_ascii=False).encode()  # a lone surrogate cannot be encoded
    except (ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise BadPayload(f"body is not JSON the inbox can store: {type(exc).__name__}") from exc
    _check_storable(data, 0)
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_storable(value: Any, level: int) -> None:
    if level > MAX_DEPTH:
        raise BadPayload(f"body nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        if "\x00" in value:
            raise BadPayload("body holds a NUL character, which PostgreSQL cannot store")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, level)
            _check_storable(item, level + 1)
    elif isinstance(value, list):
        for item in value:
            _check_storable(item, level + 1)


class Webhook:
    def __init__(self, rpc: Rpc, stripe: StripeApi, fulfilment: Fulfilment, metrics: Metrics | None = None) -> None:
        self.rpc = rpc
        self.stripe = stripe
        self.metrics = metrics or rpc.metrics  # events by type and outcome
        self.fulfilment = fulfilment
        self.handlers: dict[str, Handler] = {
            "checkout.session.completed": self._fulfil,
            "checkout.session.async_payment_succeeded": self._fulfil,
            "checkout.session.async_payment_failed": self._payment_failed,
            "checkout.session.expired": self._expired,
            "charge.refunded": self._charge_refunded,
            "refund.created": self._refund,
            "refund.updated": self._refund,
            "refund.failed": self._refund,
            "charge.refund.updated": self._refund,
            "charge.dispute.created": self._dispute,
        }

    async def handle(self, event: dict[str, Any], *, replay: bool = False) -> WebhookAck:
        """Process a verified event once; deliveries of a finished event are only acknowledged.
        A replay (an operator's) handles it again whatever it came to before."""
        recorded = await self.rpc.call("record_stripe_event", {
            "event_id": event["id"], "event_type": event["type"],
            "livemode": event.get("livemode") is True, "payload": event,
        })
        status = InboxStatus(recorded["status"])
        if status is not InboxStatus.received and not replay:
            self.metrics.webhook_event(event["type"], "duplicate", self.handlers)
            return WebhookAck(status=status, duplicate=True)

        handler = self.handlers.get(event["type"], _ignore)
        try:
            outcome = await handler(event)
        except ApiError as exc:
            if exc.http_status >= 500:  # transient: stays `received` for Stripe's retry
                await self._finish(event, InboxStatus.received, Outcome(InboxStatus.received), error=str(exc))
                self.metrics.webhook_event(event["type"], "error", self.handlers)
                raise
            outcome = Outcome(InboxStatus.failed, detail={"reason": exc.code, "message": exc.detail})
        except Exception as exc:  # a bug: record it (replayable once fixed) rather than leave it half-handled
            log.exception("stripe event %s could not be handled", event["id"])
            outcome = Outcome(InboxStatus.failed, detail={"reason": "HANDLER_ERROR"})
            await self._finish(event, InboxStatus.failed, outcome, error=f"{type(exc).__name__}: {exc}")
            self.metrics.webhook_event(event["type"], InboxStatus.failed, self.handlers)
            return WebhookAck(status=InboxStatus.failed)
        if event.get("api_version") not in (None, API_VERSION):
            outcome.detail["api_version"] = event["api_version"]  # read anyway; the endpoint should be pinned
        await self._finish(event, InboxStatus(outcome.status), outcome)
        self.metrics.webhook_event(event["type"], outcome.status, self.handlers)
        session_id = outcome.result.session_id if outcome.result else outcome.detail.get("session_id")
        return WebhookAck(status=InboxStatus(outcome.status), session_id=session_id)

    async def _finish(self, event: dict[str, Any], status: InboxStatus, outcome: Outcome, error: str | None = None,
                      ) -> None:
        detail = {**outcome.detail, **({"created": outcome.result.created} if outcome.result else {})}
        session_id = outcome.result.session_id if outcome.result else detail.get("session_id")
        await self.rpc.call("finish_stripe_event", {
            "event_id": event["id"], "status": status.value, "outcome": detail,
            "checkout_session_id": _checkout_id(event),
            "session_id": str(session_id) if session_id else None,
            "error": error,
        })

    async def _fulfil(self, event: dict[str, Any]) -> Outcome:
        if _checkout_id(event) is None:
            return Outcome(InboxStatus.failed, detail={"reason": "not a checkout.session object"})
        outcome = await self.fulfilment.fulfil(_object(event))
        if outcome.status == PENDING:
            return Outcome(InboxStatus.ignored, detail=outcome.detail)
        return outcome

    async def _payment_failed(self, event: dict[str, Any]) -> Outcome:
        # A declined bank payment is business as usual, not a failure of ours: nothing to retry or replay.
        return await self._checkout_status(event, "payment_failed")

    async def _expired(self, event: dict[str, Any]) -> Outcome:
        return await self._checkout_status(event, "expired")

    async def _checkout_status(self, event: dict[str, Any], status: str) -> Outcome:
        if _checkout_id(event) is None:
            return Outcome(InboxStatus.failed, detail={"reason": "not a checkout.session object"})
        result = await self.fulfilment.record_status(_object(event), status)
        return Outcome(InboxStatus.processed, detail={"checkout": status, **_present(result)})

    async def _charge_refunded(self, event: dict[str, Any]) -> Outcome:
        """A charge's refunds changed. Since API version 2022-11-15 a Charge carries no refund list, so
        the refunds of its payment intent are read from Stripe and each is recorded by its id."""
        charge = _object(event)
        payment_intent = charge.get("payment_intent")
        if charge.get("object") != "charge" or not isinstance(payment_intent, str) or not PAYMENT_INTENT.fullmatch(
                payment_intent):
            return Outcome(InboxStatus.failed, detail={"reason": "not a charge with a payment intent"})
        result: dict[str, Any] = {}
        for refund in await self.stripe.refunds_of(payment_intent):
            result = await self._record_refund(refund) or result
        return Outcome(InboxStatus.processed, detail=_present(result))

    async def _refund(self, event: dict[str, Any]) -> Outcome:
        refund = _object(event)
        if refund.get("object") != "refund":
            return Outcome(InboxStatus.failed, detail={"reason": "not a refund object"})
        result = await self._record_refund(refund)
        if result is None:
            return Outcome(InboxStatus.failed, detail={"reason": "not a refund with an id, an amount and a status"})
        return Outcome(InboxStatus.processed, detail=_present(result))

    async def _record_refund(self, refund: dict[str, Any]) -> dict[str, Any] | None:
        refund_id, amount, status = refund.get("id"), refund.get("amount"), refund.get("status")
        if not isinstance(refund_id, str) or not _is_amount(amount) or not isinstance(status, str):
            return None
        payment_intent = refund.get("payment_intent")
        result: dict[str, Any] = await self.rpc.call("record_charge_refund", {
            "refund_id": refund_id, "amount": amount, "status": status,
            "payment_intent": payment_intent if isinstance(payment_intent, str) else None,
            "failure_reason": refund.get("failure_reason") if isinstance(refund.get("failure_reason"), str) else None,
            "payment_id": payment_id_of(refund),
        })
        return result

    async def _dispute(self, event: dict[str, Any]) -> Outcome:
        dispute = _object(event)
        payment_intent, dispute_id = dispute.get("payment_intent"), dispute.get("id")
        if not isinstance(payment_intent, str) or not isinstance(dispute_id, str):
            return Outcome(InboxStatus.failed, detail={"reason": "not a dispute with a payment intent"})
        reason = dispute.get("reason")
        result = await self.rpc.call("record_charge_dispute", {
            "payment_intent": payment_intent, "dispute_id": dispute_id,
            "reason": reason if isinstance(reason, str) else None,
        })
        return Outcome(InboxStatus.processed, detail={k: v for k, v in result.items() if v is not None})


async def _ignore(event: dict[str, Any]) -> Outcome:
    return Outcome(InboxStatus.ignored, detail={"reason": "not handled"})


def _present(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if v is not None}


def _is_amount(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31


def _object(event: dict[str, Any]) -> dict[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def _checkout_id(event: dict[str, Any]) -> str | None:
    obj = _object(event)
    checkout_id = obj.get("id")
    if obj.get("object") != "checkout.session" or not isinstance(checkout_id, str):
        return None
    return checkout_id if CHECKOUT.fullmatch(checkout_id) else None
