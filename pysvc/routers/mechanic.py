"""Routes for mechanics (Supabase access tokens of users with a `mechanics` row): the queue,
accepting a session, and moving it through its life. The SQL functions decide who may."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from pysvc import errors
from pysvc.deps import SIGNED_IN, Mechanic, Svc
from pysvc.schemas import QueuedSession, SessionState, error_responses

router = APIRouter(prefix="/api", tags=["mechanic"])

AS_MECHANIC = (*SIGNED_IN, errors.NotAMechanic, errors.MechanicInactive)
ON_SESSION = (*AS_MECHANIC, errors.SessionNotFound, errors.NotAssignedMechanic, errors.InvalidTransition)


@router.get(
    "/mechanic/queue", response_model=list[QueuedSession], summary="Sessions this mechanic may accept, urgent first",
    responses=error_responses(*AS_MECHANIC),
)
async def queue(mechanic: Mechanic, svc: Svc) -> list[QueuedSession]:
    return await svc.lifecycle.queue(mechanic)


@router.post(
    "/assignments/{assignment_id}/accept", response_model=SessionState,
    summary="Accept a queued session: the first mechanic wins",
    responses=error_responses(*AS_MECHANIC, errors.NotEligible, errors.AssignmentNotFound, errors.AssignmentTaken,
                              errors.AssignmentClosed),
)
async def accept(assignment_id: UUID, mechanic: Mechanic, svc: Svc) -> SessionState:
    return await svc.lifecycle.accept(assignment_id, mechanic)


@router.post(
    "/assignments/{assignment_id}/decline", response_model=SessionState,
    summary="Turn down an offer made to you by name: it is offered to everyone at once",
    description="Only the mechanic an offer names (the customer's preferred mechanic) may decline it. A "
                "priority_broadcast or workshop_only session is then offered to every mechanic (hybrid: every "
                "specialist) from now; nothing is refunded. Declining again is 409 ASSIGNMENT_ALREADY_DECLINED.",
    responses=error_responses(*AS_MECHANIC, errors.NotPreferredMechanic, errors.AssignmentNotFound,
                              errors.AssignmentAlreadyDeclined, errors.AssignmentClosed),
)
async def decline(assignment_id: UUID, mechanic: Mechanic, svc: Svc) -> SessionState:
    return await svc.lifecycle.decline(assignment_id, mechanic)


@router.post("/sessions/{session_id}/start", response_model=SessionState,
             summary="waiting → live, once the customer has signed the waiver",
             responses=error_responses(*ON_SESSION, errors.WaiverNotSigned))
async def start(session_id: UUID, mechanic: Mechanic, svc: Svc) -> SessionState:
    return await svc.lifecycle.start(session_id, mechanic)


@router.post("/sessions/{session_id}/complete", response_model=SessionState, summary="live → completed",
             responses=error_responses(*ON_SESSION))
async def complete(session_id: UUID, mechanic: Mechanic, svc: Svc) -> SessionState:
    return await svc.lifecycle.complete(session_id, mechanic)


@router.post(
    "/sessions/{session_id}/release", response_model=SessionState,
    summary="Give an accepted session back to the queue before it starts (its expiry clock restarts)",
    responses=error_responses(*ON_SESSION),
)
async def release(session_id: UUID, mechanic: Mechanic, svc: Svc) -> SessionState:
    return await svc.lifecycle.release(session_id, mechanic)
