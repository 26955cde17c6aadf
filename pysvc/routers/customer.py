"""Routes for signed-in customers (Supabase access tokens)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from pysvc import errors
from pysvc.deps import SIGNED_IN, Customer, Svc, User
from pysvc.schemas import (
    Credits,
    IntakeStart,
    IntakeStarted,
    SessionDetail,
    SessionOut,
    SessionState,
    WaiverSigned,
    error_responses,
)

router = APIRouter(prefix="/api", tags=["customer"])

@router.post(
    "/intake/start", response_model=IntakeStarted, response_model_exclude_none=True,
    summary="Store an intake; a free plan gets its session now",
    responses=error_responses(*SIGNED_IN, errors.UnknownPlan, errors.MechanicNotFound, errors.ActiveSessionExists,
                              errors.IntakeAlreadyUsed, errors.InsufficientCredits, errors.PayloadTooLarge),
)
async def start_intake(body: IntakeStart, customer: Customer, svc: Svc) -> IntakeStarted:
    # The app serves this route through pysvc.fastpath (the same checks, service and model, without the
    # framework's per-request work); this declaration is its OpenAPI entry and serves routers mounted alone.
    return await svc.intakes.start(customer, body)


@router.post(
    "/intake/{intake_id}/waiver", response_model=WaiverSigned, response_model_exclude_none=True,
    summary="Sign the waiver; a paid plan gets a Checkout URL",
    responses=error_responses(*SIGNED_IN, errors.IntakeNotFound, errors.UnknownPlan, errors.ActiveSessionExists,
                              errors.IntakeAlreadyUsed,
                              errors.StripeRefused, errors.StripeNotConfigured),
)
async def sign_waiver(intake_id: UUID, customer: Customer, svc: Svc) -> WaiverSigned:
    return await svc.intakes.sign_waiver(customer, intake_id)


@router.get(
    "/sessions/active", response_model=SessionOut, summary="The caller's active session",
    responses=error_responses(*SIGNED_IN, errors.NoActiveSession),
)
async def active_session(customer: Customer, svc: Svc) -> SessionOut:
    active = await svc.store.active_session(customer)
    if active is None:
        raise errors.NoActiveSession()
    return SessionOut(session_id=active.id, type=active.type, status=active.status, plan=active.plan,
                      intake_id=active.intake_id)


@router.post(
    "/sessions/{session_id}/cancel", response_model=SessionState,
    summary="Cancel before the session starts; the money goes back (Stripe refund or credits)",
    responses=error_responses(*SIGNED_IN, errors.SessionNotFound, errors.SessionNotCancellable),
)
async def cancel_session(session_id: UUID, customer: Customer, svc: Svc) -> SessionState:
    return await svc.lifecycle.cancel(session_id, customer)


@router.get(
    "/sessions/{session_id}", response_model=SessionDetail, summary="One session, for its participants",
    responses=error_responses(*SIGNED_IN, errors.SessionNotFound),
)
async def session_detail(session_id: UUID, user: User, svc: Svc) -> SessionDetail:
    detail = await svc.store.session_detail(session_id, user)
    if detail is None:
        raise errors.SessionNotFound()
    return detail


@router.get("/credits", response_model=Credits, summary="The caller's credit balance and recent entries",
            responses=error_responses(*SIGNED_IN))
async def credits(customer: Customer, svc: Svc) -> Credits:
    return await svc.store.credits(customer)
