"""The RPC client for a session's life after creation: accept, start, complete, release, cancel,
the mechanic's queue and the expiry sweep. Each is one SQL function, one transaction, under the
customer's lock (sql/functions/lifecycle/, sql/functions/routing/); this module only types the calls
(into the API's own models: the SQL says session_type where the API says type)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID

from pydantic import TypeAdapter

from pysvc.postgrest import Rpc
from pysvc.schemas import QueuedSession, SessionState

QUEUE = TypeAdapter(list[QueuedSession])


def _interval(delta: timedelta) -> str:
    return f"{int(delta.total_seconds())} seconds"


class Lifecycle:
    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc

    async def _state(self, function: str, **args: object) -> SessionState:
        data = await self.rpc.call(function, {k: str(v) if isinstance(v, UUID) else v for k, v in args.items()})
        return SessionState.model_validate({**data, "type": data["session_type"]})

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

    async def queue(self, mechanic_id: UUID) -> list[QueuedSession]:
        rows = await self.rpc.call("mechanic_queue_for", {"mechanic_id": str(mechanic_id)})
        return QUEUE.validate_python([{**row, "type": row["session_type"]} for row in rows])

    async def expire(self, older_than: timedelta, urgent_older_than: timedelta) -> dict[str, Any]:
        """The sweep: pending sessions nobody accepted in time become `expired`, refunds queued."""
        result: dict[str, Any] = await self.rpc.call("expire_sessions", {
            "older_than": _interval(older_than), "urgent_older_than": _interval(urgent_older_than),
        })
        return result
