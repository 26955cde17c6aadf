"""Request and response bodies of the HTTP API: what the OpenAPI document shows is what is sent."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from pysvc.enums import PLAN_CODE, InboxStatus, RoutingType, SessionStatus, SessionType
from pysvc.errors import ApiError


class Body(BaseModel):
    """Responses use camelCase keys, as the original API did."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class ErrorBody(BaseModel):
    """Every error: a message for people, a stable code for programs, and sometimes more fields."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    error: str = Field(examples=["You already have an active session"])
    code: str = Field(examples=["ACTIVE_SESSION_EXISTS"])


# --- intake ----------------------------------------------------------------------------------

UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
INVALID_INTAKE = "INVALID_INTAKE"  # the validation error type, and the code it is answered with

class IntakeStart(BaseModel):
    """Body of POST /api/intake/start. The customer comes from the token, never from here."""

    model_config = ConfigDict(extra="forbid")

    plan: str = Field(pattern=PLAN_CODE, examples=["free"])
    intake_id: UUID | None = Field(
        default=None, description="Client-generated id: a retried request with the same id creates nothing more.",
    )
    concern: str | None = Field(default=None, max_length=4000)
    vehicle_make: str | None = Field(default=None, max_length=100)
    vehicle_model: str | None = Field(default=None, max_length=100)
    vehicle_year: int | None = Field(default=None, ge=1900, le=2100)
    vehicle_vin: str | None = Field(default=None, pattern=r"^[A-HJ-NPR-Z0-9]{17}$")
    urgent: bool = False
    is_specialist: bool = False
    preferred_mechanic_id: UUID | None = None
    routing_type: RoutingType = RoutingType.broadcast
    payment_method: Literal["stripe", "credits"] = Field(
        default="stripe", description="Paid plans: Stripe Checkout, or the plan's credit cost taken at once.",
    )

    @field_validator("plan", "concern", "vehicle_make", "vehicle_model", "vehicle_vin", mode="before")
    @classmethod
    def _storable(cls, value: object) -> object:
        """PostgreSQL stores neither NUL nor half a surrogate pair in text or jsonb: refused here, before
        anything is written, as the intake's own error (api.on_invalid answers INVALID_INTAKE)."""
        if isinstance(value, str) and UNSTORABLE.search(value):
            raise PydanticCustomError(INVALID_INTAKE, "NUL characters and unpaired surrogates are not allowed")
        return value

    def details(self) -> dict[str, object]:
        """The intake's descriptive fields, as the SQL functions take them."""
        return self.model_dump(
            mode="json", exclude_none=True,
            include={"concern", "vehicle_make", "vehicle_model", "vehicle_year", "vehicle_vin"},
        )


class SessionState(Body):
    """A session after a transition, and whether this call changed it (repeats are harmless)."""

    session_id: UUID
    status: SessionStatus
    type: SessionType
    plan: str
    mechanic_id: UUID | None = None
    assignment_id: UUID | None = None
    refund: dict[str, Any] | None = Field(default=None, description="How the money went back, if it did.")
    changed: bool


class TimelineEntry(Body):
    event: str
    at: datetime
    user_id: UUID | None = None
    reason: str | None = Field(default=None, description="Why, when the event has a reason (e.g. no_show, time_limit).")


class PaymentSummary(Body):
    """Where a paid session's money is: consumed (it paid for this session), refund_requested,
    refunded or refund_failed (support is on it)."""

    status: str
    amount: int
    currency: str
    amount_refunded: int


class SessionDetail(Body):
    """A participant's view of one session."""

    session_id: UUID
    type: SessionType
    status: SessionStatus
    plan: str
    intake_id: UUID
    mechanic_id: UUID | None = None
    created_at: datetime
    payment: PaymentSummary | None = None
    started_at: datetime | None = None
    waiver_signed: bool = Field(description="The customer signed the waiver: a mechanic may start the session.")
    urgent: bool
    routing_type: RoutingType
    timeline: list[TimelineEntry]


class QueuedSession(Body):
    assignment_id: UUID
    session_id: UUID
    type: SessionType
    plan: str
    urgent: bool
    offered_at: datetime
    preferred: bool = Field(description="This mechanic was asked for by name.")


class CreditEntry(Body):
    delta: int
    reason: str
    session_id: UUID | None = None
    at: datetime


class Credits(Body):
    balance: int
    entries: list[CreditEntry] = Field(description="The most recent entries, newest first.")


class IntakeStarted(Body):
    redirect: str = Field(examples=["/intake/waiver?session=…&plan=free&intake_id=…"])
    intake_id: UUID
    session_id: UUID | None = Field(default=None, description="Set when a free plan's session was created.")


class WaiverSigned(Body):
    checkout_url: str | None = Field(default=None, description="Paid plans: where to pay (Stripe Checkout).")
    waiting_room_url: str | None = Field(default=None, description="Free plans: where to wait for a mechanic.")
    session_id: UUID | None = None


# --- sessions --------------------------------------------------------------------------------

class SessionOut(Body):
    session_id: UUID
    type: SessionType
    status: SessionStatus
    plan: str
    intake_id: UUID


# --- Stripe ----------------------------------------------------------------------------------

class WebhookAck(Body):
    received: Literal[True] = True
    status: InboxStatus
    duplicate: bool = False
    session_id: UUID | None = None


class CheckoutFulfilled(Body):
    session_id: UUID
    redirect: str


class CheckoutPending(Body):
    status: Literal["pending"] = "pending"
    error: str = "payment not settled yet"


# --- health ----------------------------------------------------------------------------------

class BackgroundJob(Body):
    last_success_at: datetime | None = Field(description="When this step last succeeded in this process.")
    every_seconds: float
    stalled: bool = Field(description="No success for 3 of its intervals.")


class Health(Body):
    """200 whenever PostgREST and the database answer; `degraded` when a background step stalls, so that
    a Stripe outage never takes every instance out of a load balancer (docs/operations.md)."""

    status: Literal["ok", "degraded"] = "ok"
    background: dict[str, BackgroundJob] | None = Field(
        default=None, description="This process's background steps (absent when it runs none).")


def error_responses(*errors: type[ApiError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these errors: one entry per status, listing the codes it carries."""
    by_status: dict[int, list[str]] = {}
    for error in errors:
        by_status.setdefault(error.status, []).append(error.code)
    return {
        status: {"model": ErrorBody, "description": "One of: " + ", ".join(sorted(set(codes)))}
        for status, codes in sorted(by_status.items())
    }
