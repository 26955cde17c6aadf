"""The intake path: a customer describes the problem; a free plan gets its session at once through
the factory, a paid plan goes to the waiver and then to Stripe Checkout."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from pysvc.checkout import Checkout
from pysvc.errors import ActiveSessionExists, InvalidSessionRequest, PysvcError, SessionError
from pysvc.factory import PLAN_CODE, AsyncSessionFactory, CreateSessionParams, PaymentMethod, RoutingType
from pysvc.store import ActiveSession, Intake, Plan, Store


class IntakeNotFound(PysvcError):
    """No such intake for this customer (someone else's looks the same): HTTP 404."""


class IntakeStart(BaseModel):
    """Body of POST /api/intake/start. The customer comes from the token, never from here."""

    model_config = ConfigDict(extra="forbid")

    plan: str = Field(pattern=PLAN_CODE, examples=["free"])
    concern: str | None = Field(default=None, max_length=4000)
    vehicle_make: str | None = Field(default=None, max_length=100)
    vehicle_model: str | None = Field(default=None, max_length=100)
    vehicle_year: int | None = Field(default=None, ge=1900, le=2100)
    vehicle_vin: str | None = Field(default=None, pattern=r"^[A-HJ-NPR-Z0-9]{17}$")
    urgent: bool = False
    is_specialist: bool = False
    preferred_mechanic_id: UUID | None = None
    routing_type: RoutingType = RoutingType.broadcast


def conflict(active: ActiveSession) -> ActiveSessionExists:
    return ActiveSessionExists(
        "You already have an active session",
        session_id=str(active.id), session_type=active.type.value, status=active.status,
    )


class Intakes:
    def __init__(self, factory: AsyncSessionFactory, store: Store, checkout: Checkout) -> None:
        self.factory = factory
        self.store = store
        self.checkout = checkout

    async def _plan(self, code: str) -> Plan:
        plan = await self.store.plan(code)
        if plan is None:
            raise InvalidSessionRequest(f"plan {code!r} is not offered", code="UNKNOWN_PLAN")
        return plan

    async def start(self, customer_id: UUID, body: IntakeStart) -> dict[str, Any]:
        plan = await self._plan(body.plan)
        if body.preferred_mechanic_id and not await self.store.mechanic_is_active(body.preferred_mechanic_id):
            raise InvalidSessionRequest("the preferred mechanic does not exist or is not active",
                                        code="MECHANIC_NOT_FOUND")
        if not plan.is_free:
            # Never send a customer to pay while a session is active.
            active = await self.store.active_session(customer_id)
            if active is not None:
                raise conflict(active)
        intake = await self.store.insert_intake(customer_id, body.model_dump(mode="json", exclude_none=True))
        if not plan.is_free:
            return {
                "redirect": f"/intake/waiver?plan={plan.code}&intake_id={intake.id}",
                "intakeId": str(intake.id),
            }
        try:
            result = await self.factory.create_session_record(self._free_params(intake))
        except SessionError as exc:
            if exc.status < 500:
                await self.store.delete_intake(intake.id)  # a refused request leaves nothing behind
            raise
        return {"redirect": result.redirect_url, "sessionId": str(result.session_id)}

    @staticmethod
    def _free_params(intake: Intake) -> CreateSessionParams:
        return CreateSessionParams(
            customer_id=intake.customer_user_id,
            plan=intake.plan,
            intake_id=intake.id,
            payment_method=PaymentMethod.free,
            urgent=intake.urgent,
            is_specialist=intake.is_specialist,
            preferred_mechanic_id=intake.preferred_mechanic_id,
            routing_type=intake.routing_type,
        )

    async def sign_waiver(self, customer_id: UUID, intake_id: UUID) -> dict[str, Any]:
        intake = await self.store.intake(customer_id, intake_id)
        if intake is None:
            raise IntakeNotFound("no such intake")
        plan = await self._plan(intake.plan)
        if plan.is_free:
            intake = await self.store.sign_waiver(intake)
            session = await self.store.session_for_intake(intake.id)
            url = f"/session/{session.id}/waiting-room" if session else f"/intake/{intake.id}/waiting-room"
            return {"waitingRoomUrl": url, **({"sessionId": str(session.id)} if session else {})}
        self.checkout.require_client()
        active = await self.store.active_session(customer_id)
        if active is not None:
            raise conflict(active)
        existing = await self.store.session_for_intake(intake.id)
        if existing is not None:
            raise InvalidSessionRequest("this intake already has a session", code="INTAKE_ALREADY_USED")
        intake = await self.store.sign_waiver(intake)
        return {"checkoutUrl": await self.checkout.create_session(intake, plan, None)}
