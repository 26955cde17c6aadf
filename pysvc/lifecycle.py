"""The RPC client for a session's life after creation: accept, start, complete, release, cancel,
the mechanic's queue and the expiry sweep. Each is one SQL function, one transaction, under the
customer's lock (sql/migrations/*_session_lifecycle.sql); this module only types the calls."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from pydantic import BaseModel, TypeAdapter

from pysvc.enums import SessionStatus, SessionType
from pysvc.postgrest import Rpc


class SessionState(BaseModel):
    """What every transition answers: the session as it now is, and whether this call changed it."""

    session_id: UUID
    status: SessionStatus
    session_type: SessionType
    plan: str
    customer_id: UUID
    mechanic_id: UUID | None = None
    assignment_id: UUID | None = None
    assignment_status: str | None = None
    refund: dict[str, Any] | None = None
    changed: bool


class QueueItem(BaseModel):
    assignment_id: UUID
    session_id: UUID
    session_type: SessionType
    plan: str
    urgent: bool
    offered_at: datetime
    routing_type: str
    preferred: bool


QUEUE = TypeAdapter(list[QueueItem])


def _interval(delta: timedelta) -> str:
    return f"{int(delta.total_seconds())} seconds"


class Lifecycle:
    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc

    async def _state(self, function: str, **args: object) -> SessionState:
        data = await self.rpc.call(function, {k: str(v) if isinstance(v, UUID) else v for k, v in args.items()})
        return SessionState.model_validate(data)

    async def accept(self, assignment_id: UUID, mechanic_id: UUID) -> SessionState:
        return await self._state("accept_assignment", assignment_id=assignment_id, mechanic_id=mechanic_id)

    async def start(self, session_id: UUID, mechanic_id: UUID) -> SessionState:
        return await self._state("start_session", session_id=session_id, mechanic_id=mechanic_id)

    async def complete(self, session_id: UUID, mechanic_id: UUID) -> SessionState:
        return await self._state("complete_session", session_id=session_id, mechanic_id=mechanic_id)

    async def release(self, session_id: UUID, mechanic_id: UUID) -> SessionState:
        return await self._state("release_session", session_id=session_id, mechanic_id=mechanic_id)

    async def cancel(self, session_id: UUID, customer_id: UUID, reason: str | None = None) -> SessionState:
        return await self._state("cancel_session", session_id=session_id, customer_id=customer_id, reason=reason)

    async def queue(self, mechanic_id: UUID) -> list[QueueItem]:
        return QUEUE.validate_python(await self.rpc.call("mechanic_queue_for", {"mechanic_id": str(mechanic_id)}))

    async def expire(self, older_than: timedelta, urgent_older_than: timedelta) -> dict[str, Any]:
        """The sweep: pending sessions nobody accepted in time become `expired`, refunds queued."""
        result: dict[str, Any] = await self.rpc.call("expire_sessions", {
            "older_than": _interval(older_than), "urgent_older_than": _interval(urgent_older_than),
        })
        return result
