"""Reads and simple writes through PostgREST: the plan catalog, intakes, sessions, the intake RPC.
Creating sessions is `pysvc.factory`'s alone; the Stripe inbox is `pysvc.webhook`'s."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
from postgrest import AsyncPostgrestClient
from pydantic import BaseModel

from pysvc.enums import RoutingType, SessionStatus, SessionType
from pysvc.errors import BackendUnavailable
from pysvc.postgrest import Rpc, guard
from pysvc.schemas import CreditEntry, Credits, SessionDetail, TimelineEntry

PLAN_CACHE_SECONDS = 30.0


class Plan(BaseModel):
    code: str
    session_type: SessionType
    price_cents: int
    currency: str
    is_free: bool
    credit_cost: int | None = None
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


class SessionRow(BaseModel):
    id: UUID
    type: SessionType
    status: SessionStatus
    plan: str
    intake_id: UUID


class CheckoutRow(BaseModel):
    id: str
    status: str
    url: str | None
    expires_at: datetime | None

    def usable(self) -> bool:
        """Still open and not about to close under the customer."""
        return self.status == "open" and self.url is not None and (
            self.expires_at is None or self.expires_at > datetime.now(UTC) + timedelta(minutes=2))


INTAKE_COLUMNS = "id,customer_user_id,plan,urgent,is_specialist,preferred_mechanic_id,routing_type,waiver_signed_at"
SESSION_COLUMNS = "id,type,status,plan,intake_id"


class Store:
    def __init__(self, client: AsyncPostgrestClient, rpc: Rpc) -> None:
        self.client = client
        self.rpc = rpc
        self._plans: dict[str, Plan] = {}
        self._plans_loaded_at = -PLAN_CACHE_SECONDS

    async def plan(self, code: str) -> Plan | None:
        """Active plan by code, from a catalog re-read at most every 30 s (it changes rarely)."""
        if time.monotonic() - self._plans_loaded_at > PLAN_CACHE_SECONDS:
            response = await guard(self.client.from_("plans").select("*").eq("active", True).execute())
            self._plans = {p.code: p for p in (Plan.model_validate(row) for row in response.data)}
            self._plans_loaded_at = time.monotonic()
        return self._plans.get(code)

    async def submit_intake(self, customer_id: UUID, intake_id: UUID, fields: dict[str, Any]) -> None:
        """Store a paid plan's intake unless a session is active (409), in one call."""
        await self.rpc.call("submit_intake", {"customer_id": str(customer_id), "intake_id": str(intake_id), **fields})

    async def intake(self, customer_id: UUID, intake_id: UUID) -> Intake | None:
        response = await guard(
            self.client.from_("intakes").select(INTAKE_COLUMNS)
            .eq("id", str(intake_id)).eq("customer_user_id", str(customer_id)).execute()
        )
        return Intake.model_validate(response.data[0]) if response.data else None

    async def sign_waiver(self, intake: Intake) -> Intake:
        if intake.waiver_signed_at is not None:
            return intake
        response = await guard(
            self.client.from_("intakes").update({"waiver_signed_at": datetime.now(UTC).isoformat()})
            .eq("id", str(intake.id)).is_("waiver_signed_at", "null").execute()
        )
        if not response.data:  # signed concurrently: read what the other request wrote
            signed = await self.intake(intake.customer_user_id, intake.id)
            assert signed is not None
            return signed
        return Intake.model_validate(response.data[0])

    async def active_session(self, customer_id: UUID) -> SessionRow | None:
        rows = await self.rpc.select("sessions", {"select": SESSION_COLUMNS, "customer_user_id": f"eq.{customer_id}",
                                                  "is_active": "is.true", "limit": "1"})
        return SessionRow.model_validate(rows[0]) if rows else None

    async def session_for_intake(self, intake_id: UUID) -> SessionRow | None:
        response = await guard(
            self.client.from_("sessions").select(SESSION_COLUMNS).eq("intake_id", str(intake_id)).execute()
        )
        return SessionRow.model_validate(response.data[0]) if response.data else None

    async def session_detail(self, session_id: UUID, user_id: UUID) -> SessionDetail | None:
        """One session with its participants and history, if `user_id` takes part in it."""
        rows = await self.rpc.select("sessions", {
            "select": "id,type,status,plan,intake_id,created_at,session_participants(user_id,role),"
                      "session_events(event_type,user_id,created_at)",
            "id": f"eq.{session_id}",
        })
        if not rows:
            return None
        row: Any = rows[0]
        people = {p["user_id"]: p["role"] for p in row["session_participants"]}
        if str(user_id) not in people:
            return None
        events = sorted(row["session_events"], key=lambda e: str(e["created_at"]))
        return SessionDetail(
            session_id=row["id"], type=row["type"], status=row["status"], plan=row["plan"],
            intake_id=row["intake_id"], created_at=row["created_at"],
            mechanic_id=next((u for u, role in people.items() if role == "mechanic"), None),
            timeline=[TimelineEntry(event=e["event_type"], at=e["created_at"], user_id=e["user_id"]) for e in events],
        )

    async def credits(self, customer_id: UUID, recent: int = 20) -> Credits:
        response = await guard(
            self.client.from_("credit_entries").select("delta,reason,session_id,created_at")
            .eq("customer_user_id", str(customer_id)).order("id", desc=True).execute()
        )
        rows: list[Any] = response.data
        return Credits(
            balance=sum(int(r["delta"]) for r in rows),
            entries=[CreditEntry(delta=r["delta"], reason=r["reason"], session_id=r["session_id"], at=r["created_at"])
                     for r in rows[:recent]],
        )

    async def checkouts_of(self, intake_id: UUID) -> list[CheckoutRow]:
        response = await guard(
            self.client.from_("checkouts").select("id,status,url,expires_at")
            .eq("intake_id", str(intake_id)).order("created_at", desc=True).execute()
        )
        return [CheckoutRow.model_validate(row) for row in response.data]

    async def record_checkout(self, intake: Intake, checkout_id: str, url: str, expires_at: datetime) -> None:
        row = {"id": checkout_id, "intake_id": str(intake.id), "customer_user_id": str(intake.customer_user_id),
               "url": url, "expires_at": expires_at.isoformat()}
        await guard(self.client.from_("checkouts").upsert(row, on_conflict="id", ignore_duplicates=True).execute())

    async def close_checkout(self, checkout_id: str, status: str) -> None:
        await guard(
            self.client.from_("checkouts").update({"status": status, "updated_at": datetime.now(UTC).isoformat()})
            .eq("id", checkout_id).execute()
        )

    async def ping(self, timeout: float = 1.0) -> None:
        """PostgREST and the database answer within `timeout` seconds (a health check must not hang)."""
        try:
            response = await self.client.session.get(
                f"{self.rpc.base}/plans", params={"select": "code", "limit": "1"}, headers=self.client.headers,
                timeout=timeout,
            )
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"PostgREST unreachable: {exc}") from exc
        if not response.is_success:
            raise BackendUnavailable(f"PostgREST answered {response.status_code}")
