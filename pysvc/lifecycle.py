"""The RPC client for a session's life after creation: accept, decline, start, complete, release,
cancel, the mechanic's queue, the sweep and the limits it obeys. Each is one SQL function, one
transaction, under the customer's lock (sql/functions/lifecycle/, sql/functions/routing/); this module
only types the calls (into the API's own models: the SQL says session_type where the API says type)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, TypeAdapter

from pysvc.postgrest import Rpc
from pysvc.schemas import QueuedSession, SessionState

QUEUE = TypeAdapter(list[QueuedSession])


class SessionLimits(BaseModel):
    """public.session_limits: the one row every sweep reads (pg_cron's, `pysvc serve`'s, the CLI's)."""

    pending_expiry_minutes: int
    urgent_pending_expiry_minutes: int
    no_show_minutes: int
    live_grace_minutes: int
    updated_at: datetime


LIMIT_NAMES = tuple(name for name in SessionLimits.model_fields if name != "updated_at")


class SweepResult(BaseModel):
    """What one sweep did: pending sessions expired, no-shows re-queued, live sessions timed out."""

    expired: int
    session_ids: list[UUID]
    no_shows: int
    no_show_session_ids: list[UUID]
    timed_out: int
    timed_out_session_ids: list[UUID]
    skipped: int
    limits: SessionLimits


class Lifecycle:
    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc

    async def _state(self, function: str, **args: object) -> SessionState:
        data = await self.rpc.call(function, {k: str(v) if isinstance(v, UUID) else v for k, v in args.items()})
        return SessionState.model_validate({**data, "type": data["session_type"]})

    async def accept(self, assignment_id: UUID, mechanic_id: UUID) -> SessionState:
        return await self._state("accept_assignment", assignment_id=assignment_id, mechanic_id=mechanic_id)

    async def decline(self, assignment_id: UUID, mechanic_id: UUID) -> SessionState:
        return await self._state("decline_assignment", assignment_id=assignment_id, mechanic_id=mechanic_id)

    async def start(self, session_id: UUID, mechanic_id: UUID) -> SessionState:
        return await self._state("start_session", session_id=session_id, mechanic_id=mechanic_id)

    async def complete(self, session_id: UUID, mechanic_id: UUID) -> SessionState:
        return await self._state("complete_session", session_id=session_id, mechanic_id=mechanic_id)

    async def release(self, session_id: UUID, mechanic_id: UUID) -> SessionState:
        return await self._state("release_session", session_id=session_id, mechanic_id=mechanic_id)

    async def cancel(self, session_id: UUID, customer_id: UUID, reason: str | None = None) -> SessionState:
        return await self._state("cancel_session", session_id=session_id, customer_id=customer_id, reason=reason)

    async def queue(self, mechanic_id: UUID) -> list[QueuedSession]:
        rows = await self.rpc.call("mechanic_queue_for", {"mechanic_id": str(mechanic_id)})
        return QUEUE.validate_python([{**row, "type": row["session_type"]} for row in rows])

    async def sweep(self) -> SweepResult:
        """The sweep, for every limit in public.session_limits (the same call pg_cron makes)."""
        return SweepResult.model_validate(await self.rpc.call("expire_sessions", {}))

    async def limits(self) -> SessionLimits:
        return SessionLimits.model_validate(await self.rpc.call("get_session_limits", {}))

    async def set_limits(self, **minutes: int) -> SessionLimits:
        return SessionLimits.model_validate(await self.rpc.call("set_session_limits", minutes))
