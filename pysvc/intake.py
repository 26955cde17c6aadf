"""The intake service: a free plan gets its session at once (intake and session written in one
transaction by the factory); a paid plan's intake is stored, then the waiver leads to Checkout."""

from __future__ import annotations

import uuid
from uuid import UUID

from pysvc import pages
from pysvc.enums import PaymentMethod
from pysvc.errors import CheckoutInProgress, IntakeNotFound, StripeBusy, UnknownPlan
from pysvc.factory import CreateSessionParams, SessionFactory
from pysvc.schemas import IntakeStart, IntakeStarted, WaiverSigned
from pysvc.store import Intake, Plan, Store
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
            return IntakeStarted(redirect=pages.waiting_room(result.require_session()), intake_id=intake_id,
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
        intake = await self.store.sign_waiver(intake)
        return WaiverSigned(checkout_url=await self._checkout_url(customer_id, intake))

    async def _checkout_url(self, customer_id: UUID, intake: Intake) -> str:
        """The intake's Checkout: SQL decides (refusals, reuse, the price and the exact request, stored
        first); this sends the stored request and records Stripe's answer. Two clicks, a retry after a
        lost answer or another instance all send the identical request, so Stripe opens one Checkout."""
        success_url, cancel_url = self.stripe.checkout_urls(intake.plan, intake.id)
        for _ in range(2):  # a second pass only when the payment was abandoned while Stripe answered
            payment = await self.store.open_checkout(customer_id, intake.id, success_url, cancel_url,
                                                     self.stripe.checkout_expiry_seconds)
            if payment.status == "open" and payment.checkout_url:
                return payment.checkout_url
            try:
                opened = await self.stripe.create_checkout(payment.request, payment.idempotency_key)
            except StripeBusy as exc:
                raise CheckoutInProgress() from exc
            recorded = await self.store.record_checkout_opened(payment.id, opened.id, opened.url, opened.expires_at)
            if recorded.status not in ("expired", "payment_failed") and recorded.checkout_url:
                return recorded.checkout_url
        raise CheckoutInProgress()
