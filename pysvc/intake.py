"""The intake service: a free plan gets its session at once (intake and session written in one
transaction by the factory); a paid plan's intake is stored, then the waiver leads to Checkout."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from uuid import UUID

from pysvc import pages
from pysvc.enums import PaymentMethod
from pysvc.errors import ActiveSessionExists, IntakeAlreadyUsed, IntakeNotFound, UnknownPlan
from pysvc.factory import CreateSessionParams, SessionFactory
from pysvc.schemas import IntakeStart, IntakeStarted, WaiverSigned
from pysvc.store import Plan, Store
from pysvc.stripe_api import StripeApi


class Intakes:
    def __init__(self, factory: SessionFactory, store: Store, stripe: StripeApi) -> None:
        self.factory = factory
        self.store = store
        self.stripe = stripe

    async def _plan(self, code: str) -> Plan:
        plan = await self.store.plan(code)
        if plan is None:
            raise UnknownPlan(f"plan {code!r} is not offered")
        return plan

    async def start(self, customer_id: UUID, body: IntakeStart) -> IntakeStarted:
        plan = await self._plan(body.plan)
        intake_id = body.intake_id or uuid.uuid4()
        if not plan.is_free and body.payment_method == "credits":
            result = await self.factory.create_session_record(self._params(customer_id, intake_id, body,
                                                                           PaymentMethod.credits))
            return IntakeStarted(redirect=pages.waiting_room(result.session_id), intake_id=intake_id,
                                 session_id=result.session_id)
        if not plan.is_free:
            await self.store.submit_intake(customer_id, intake_id, {
                "plan": plan.code,
                "intake": body.details(),
                **body.model_dump(mode="json", exclude_none=True,
                                  include={"urgent", "is_specialist", "preferred_mechanic_id", "routing_type"}),
            })
            return IntakeStarted(redirect=pages.waiver(plan.code, intake_id), intake_id=intake_id)
        result = await self.factory.create_session_record(self._params(customer_id, intake_id, body,
                                                                       PaymentMethod.free))
        return IntakeStarted(
            redirect=pages.waiver(plan.code, intake_id, result.session_id),
            intake_id=intake_id, session_id=result.session_id,
        )

    @staticmethod
    def _params(customer_id: UUID, intake_id: UUID, body: IntakeStart, method: PaymentMethod) -> CreateSessionParams:
        return CreateSessionParams(
            customer_id=customer_id, plan=body.plan, intake_id=intake_id, payment_method=method,
            urgent=body.urgent, is_specialist=body.is_specialist, preferred_mechanic_id=body.preferred_mechanic_id,
            routing_type=body.routing_type, intake=body.details(),
        )

    async def sign_waiver(self, customer_id: UUID, intake_id: UUID) -> WaiverSigned:
        intake = await self.store.intake(customer_id, intake_id)
        if intake is None:
            raise IntakeNotFound()
        plan = await self._plan(intake.plan)
        if plan.is_free:
            intake = await self.store.sign_waiver(intake)
            session = await self.store.session_for_intake(intake.id)
            if session is None:
                return WaiverSigned(waiting_room_url=pages.intake_waiting_room(intake.id))
            return WaiverSigned(waiting_room_url=pages.waiting_room(session.id), session_id=session.id)
        self.stripe.require_client()
        active = await self.store.active_session(customer_id)
        if active is not None:
            raise ActiveSessionExists.naming(active.id, active.type, active.status)
        if await self.store.session_for_intake(intake.id) is not None:
            raise IntakeAlreadyUsed()
        intake = await self.store.sign_waiver(intake)
        earlier = await self.store.checkouts_of(intake.id)
        usable = next((c for c in earlier if c.usable()), None)
        if usable is not None and usable.url is not None:
            return WaiverSigned(checkout_url=usable.url)
        opened = await self.stripe.create_checkout(intake, plan, attempt=len(earlier))
        await self.store.record_checkout(intake, opened.id, opened.url,
                                         datetime.fromtimestamp(opened.expires_at, UTC))
        return WaiverSigned(checkout_url=opened.url)
