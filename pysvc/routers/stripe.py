"""Stripe's webhook endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request

from pysvc import errors
from pysvc.deps import Svc
from pysvc.schemas import WebhookAck, error_responses
from pysvc.webhook import verify

router = APIRouter(prefix="/api/stripe", tags=["stripe"])


@router.post(
    "/webhook", response_model=WebhookAck, response_model_exclude_none=True,
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
