"""Reads and writes through PostgREST other than creating sessions (that is factory.py's alone):
the plan catalog, intakes, the active-session lookup and the Stripe webhook inbox."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

import httpx
from postgrest import AsyncPostgrestClient
from postgrest.exceptions import APIError
from pydantic import BaseModel

from pysvc.errors import BackendUnavailable, InvalidSessionRequest, PysvcError
from pysvc.factory import RoutingType, SessionType, is_transient

T = TypeVar("T")
PLAN_CACHE_SECONDS = 30.0


class UnknownUser(PysvcError):
    """A valid token whose user does not exist in auth.users."""


class Plan(BaseModel):
    code: str
    session_type: SessionType
    price_cents: int
    currency: str
    is_free: bool
    active: bool


class Intake(BaseModel):
    id: UUID
    customer_user_id: UUID
    plan: str
    urgent: bool
    is_specialist: bool
    preferred_mechanic_id: UUID | None
    routing_type: RoutingType
    waiver_signed_at: datetime | None


class ActiveSession(BaseModel):
    id: UUID
    type: SessionType
    status: str
    plan: str
    intake_id: UUID


INTAKE_COLUMNS = "id,customer_user_id,plan,urgent,is_specialist,preferred_mechanic_id,routing_type,waiver_signed_at"
SESSION_COLUMNS = "id,type,status,plan,intake_id"


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def _call(request: Awaitable[T]) -> T:
    try:
        return await request
    except httpx.TransportError as exc:
        raise BackendUnavailable(f"PostgREST unreachable: {exc}") from exc
    except APIError as exc:
        code = exc.code or ""
        if code == "23503":
            text = f"{exc.message} {exc.details}"
            if "customer_user_id" in text:
                raise UnknownUser("no such user") from exc
            if "preferred_mechanic_id" in text:
                raise InvalidSessionRequest("no such mechanic", code="MECHANIC_NOT_FOUND") from exc
            if "plan" in text:
                raise InvalidSessionRequest("no such plan", code="UNKNOWN_PLAN") from exc
        if is_transient(code):
            raise BackendUnavailable(f"PostgREST: {exc.message}") from exc
        if code.startswith(("22", "23")):  # data the database refused: the caller's to fix
            raise InvalidSessionRequest(exc.message or "invalid data", code="INVALID_DATA") from exc
        raise


class Store:
    def __init__(self, client: AsyncPostgrestClient) -> None:
        self.client = client
        self._plans: dict[str, Plan] = {}
        self._plans_loaded_at = 0.0

    async def plan(self, code: str) -> Plan | None:
        """Active plan by code, from a catalog re-read at most every 30 s (it changes rarely)."""
        if time.monotonic() - self._plans_loaded_at > PLAN_CACHE_SECONDS:
            response = await _call(self.client.from_("plans").select("*").eq("active", True).execute())
            plans = [Plan.model_validate(p) for p in response.data]
            self._plans = {p.code: p for p in plans}
            self._plans_loaded_at = time.monotonic()
        return self._plans.get(code)

    async def insert_intake(self, customer_id: UUID, fields: dict[str, Any]) -> Intake:
        row = {**fields, "customer_user_id": str(customer_id)}
        response = await _call(self.client.from_("intakes").insert(row).execute())
        return Intake.model_validate(response.data[0])

    async def delete_intake(self, intake_id: UUID) -> None:
        await _call(self.client.from_("intakes").delete().eq("id", str(intake_id)).execute())

    async def intake(self, customer_id: UUID, intake_id: UUID) -> Intake | None:
        response = await _call(
            self.client.from_("intakes").select(INTAKE_COLUMNS)
            .eq("id", str(intake_id)).eq("customer_user_id", str(customer_id)).execute()
        )
        return Intake.model_validate(response.data[0]) if response.data else None

    async def sign_waiver(self, intake: Intake) -> Intake:
        if intake.waiver_signed_at is not None:
            return intake
        response = await _call(
            self.client.from_("intakes").update({"waiver_signed_at": _now()})
            .eq("id", str(intake.id)).is_("waiver_signed_at", "null").execute()
        )
        if not response.data:  # signed concurrently: read what the other request wrote
            signed = await self.intake(intake.customer_user_id, intake.id)
            assert signed is not None
            return signed
        return Intake.model_validate(response.data[0])

    async def active_session(self, customer_id: UUID) -> ActiveSession | None:
        response = await _call(
            self.client.from_("sessions").select(SESSION_COLUMNS)
            .eq("customer_user_id", str(customer_id)).is_("is_active", "true").limit(1).execute()
        )
        return ActiveSession.model_validate(response.data[0]) if response.data else None

    async def session_for_intake(self, intake_id: UUID) -> ActiveSession | None:
        response = await _call(
            self.client.from_("sessions").select(SESSION_COLUMNS).eq("intake_id", str(intake_id)).execute()
        )
        return ActiveSession.model_validate(response.data[0]) if response.data else None

    async def record_event(self, event: dict[str, Any]) -> str | None:
        """Insert the event once. None if it is new, else the status its first delivery left."""
        row = {
            "id": event["id"],
            "type": event["type"],
            "livemode": bool(event.get("livemode", False)),
            "payload": event,
        }
        inserted = await _call(
            self.client.from_("stripe_events").upsert(row, on_conflict="id", ignore_duplicates=True).execute()
        )
        if inserted.data:
            return None
        existing = await _call(
            self.client.from_("stripe_events").select("status").eq("id", event["id"]).execute()
        )
        rows: list[Any] = existing.data
        return str(rows[0]["status"]) if rows else None

    async def finish_event(
        self, event_id: str, status: str, outcome: dict[str, Any], *,
        checkout_session_id: str | None = None, session_id: UUID | None = None,
    ) -> None:
        await _call(
            self.client.from_("stripe_events").update({
                "status": status,
                "outcome": outcome,
                "checkout_session_id": checkout_session_id,
                "session_id": str(session_id) if session_id else None,
                "handled_at": _now(),
            }).eq("id", event_id).execute()
        )

    async def mechanic_is_active(self, mechanic_id: UUID) -> bool:
        response = await _call(
            self.client.from_("mechanics").select("user_id")
            .eq("user_id", str(mechanic_id)).is_("active", "true").execute()
        )
        return bool(response.data)

    async def ping(self) -> None:
        await _call(self.client.from_("plans").select("code").limit(1).execute())
