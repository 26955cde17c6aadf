"""Stripe's webhook endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from pysvc import errors, pages
from pysvc.deps import Svc
from pysvc.enums import CHECKOUT_ID, InboxStatus
from pysvc.fulfilment import PENDING
from pysvc.schemas import CheckoutFulfilled, CheckoutPending, WebhookAck, error_responses
from pysvc.webhook import verify

router = APIRouter(prefix="/api", tags=["stripe"])


@router.post(
    "/stripe/webhook", response_model=WebhookAck, response_model_exclude_none=True,
    summary="Stripe events: verified on the raw body, recorded once, handled idempotently",
    responses=error_responses(errors.BadWebhook, errors.PayloadTooLarge, errors.StripeNotConfigured,
                              errors.BackendUnavailable),
    openapi_extra={"requestBody": {
        "required": True,
        "description": "The event exactly as Stripe sent it: the signature covers these bytes.",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }},
)
async def stripe_webhook(
    request: Request, svc: Svc,
    stripe_signature: Annotated[str | None, Header(description="Stripe's signature of the raw body.")] = None,
) -> WebhookAck:
    secret = svc.stripe.require_webhook_secret()
    event = verify(await request.body(), stripe_signature, secret)
    return await svc.webhook.handle(event)


@router.get(
    "/checkout/success", response_model=CheckoutFulfilled,
    summary="Where Stripe sends the customer's browser after paying: fulfils the checkout if the webhook is late",
    description=(
        "No token: Stripe's redirect carries none. The checkout id is only a key to ask Stripe, with this "
        "service's own secret key, what was paid; Stripe's answer is the proof, and fulfilment is the same "
        "idempotent call the webhook makes. Browsers get `303 See Other` to the app's page for the session "
        "(or a processing / refunded / failed page); `Accept: application/json` gets JSON instead. Nothing "
        "beyond what the redirect shows (the session id) is revealed, and nothing is cached."
    ),
    responses={
        303: {"description": "Browsers: to the app's page for the outcome.",
              "headers": {"Location": {"schema": {"type": "string"}}}},
        202: {"model": CheckoutPending, "description": "JSON: the payment has not settled yet."},
        **error_responses(errors.CheckoutNotFound, errors.PaymentRefunded, errors.CheckoutInvalid,
                          errors.InvalidRequest, errors.StripeRefused, errors.StripeNotConfigured,
                          errors.BackendUnavailable),
    },
)
async def checkout_success(
    session_id: Annotated[str, Query(pattern=CHECKOUT_ID, description="The Checkout Session id (cs_…).")],
    request: Request, svc: Svc,
) -> Response:
    payment = await svc.store.payment_of_checkout(session_id)
    if payment is None:  # not a Checkout of ours: answered without spending Stripe's rate limit on it
        raise errors.CheckoutNotFound("this service opened no such checkout")
    outcome = await svc.fulfilment.fulfil(await svc.stripe.retrieve_checkout(session_id))
    app = svc.settings.app_url
    as_json = "application/json" in request.headers.get("accept", "")
    if outcome.result is not None and outcome.result.session_id is not None:
        page = pages.waiting_room(outcome.result.session_id)
        if as_json:
            return JSONResponse(CheckoutFulfilled(session_id=outcome.result.session_id, redirect=page)
                                .model_dump(mode="json", by_alias=True))
        return RedirectResponse(app + page, status_code=303)
    if outcome.status == PENDING:
        if as_json:
            return JSONResponse(CheckoutPending().model_dump(by_alias=True), status_code=202)
        return RedirectResponse(app + pages.checkout_processing(), status_code=303)
    reason = str(outcome.detail.get("reason", errors.CheckoutInvalid.code))
    refunded = outcome.status == InboxStatus.refunded
    if not as_json:
        return RedirectResponse(app + pages.checkout_ended(refunded, reason), status_code=303)
    if refunded:
        extra = {k: v for k, v in outcome.detail.items() if k == "activeSessionId"}
        raise errors.PaymentRefunded(reason=reason, **extra)
    raise errors.CheckoutInvalid(f"this checkout cannot be fulfilled: {reason}")
