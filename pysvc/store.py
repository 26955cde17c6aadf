"""Reads and simple writes through PostgREST: the plan catalog, intakes, sessions, the intake RPC.
Creating sessions is `pysvc.factory`'s alone; the Stripe inbox is `pysvc.webhook`'s."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
from postgrest import AsyncPostgrestClient
from pydantic import BaseModel

from pysvc.db_types import PublicPlans
from pysvc.enums import RoutingType, SessionStatus, SessionType
from pysvc.errors import BackendUnavailable
from pysvc.postgrest import Rpc, guard
from pysvc.schemas import CreditEntry, Credits, PaymentSummary, SessionDetail, TimelineEntry

PLAN_CACHE_SECONDS = 30.0


class Plan(PublicPlans):
    """A row of public.plans as generated from the schema (`make types`), its type as the enum."""

    session_type: SessionType


# Partial reads: each field is a column of the generated row model (tests/test_db_types.py checks).
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


class PaymentRow(BaseModel):
    """A row of public.payments, as open_checkout and record_checkout_opened answer it."""

    id: UUID
    status: str
    checkout_session_id: str | None = None
    checkout_url: str | None = None
    session_id: UUID | None = None
    idempotency_key: str
    request: dict[str, Any]


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
            "select": "id,type,status,plan,intake_id,created_at,started_at,urgent,routing_type,"
                      "intakes(waiver_signed_at),session_participants(user_id,role),"
                      "session_events(event_type,user_id,created_at,reason:metadata->>reason),"
                      "payments(status,amount,currency,amount_refunded)",
            "id": f"eq.{session_id}",
        })
        if not rows:
            return None
        row: Any = rows[0]
        people = {p["user_id"]: p["role"] for p in row["session_participants"]}
        if str(user_id) not in people:
            return None
        events = sorted(row["session_events"], key=lambda e: str(e["created_at"]))
        payment = row.get("payments")
        payment = (payment[0] if payment else None) if isinstance(payment, list) else payment
        return SessionDetail(
            session_id=row["id"], type=row["type"], status=row["status"], plan=row["plan"],
            intake_id=row["intake_id"], created_at=row["created_at"], started_at=row["started_at"],
            waiver_signed=row["intakes"]["waiver_signed_at"] is not None, urgent=row["urgent"],
            routing_type=row["routing_type"],
            mechanic_id=next((u for u, role in people.items() if role == "mechanic"), None),
            payment=PaymentSummary.model_validate(payment) if payment else None,
            timeline=[TimelineEntry(event=e["event_type"], at=e["created_at"], user_id=e["user_id"], reason=e["reason"])
                      for e in events],
        )

    async def credits(self, customer_id: UUID, recent: int = 20) -> Credits:
        """The balance from the credit_balances view (one row, summed by the database: a list of entries
        would be capped at PostgREST's max-rows), and the most recent entries."""
        balance, entries = await asyncio.gather(
            guard(self.client.from_("credit_balances").select("balance")
                  .eq("customer_user_id", str(customer_id)).execute()),
            guard(self.client.from_("credit_entries").select("delta,reason,session_id,created_at")
                  .eq("customer_user_id", str(customer_id)).order("id", desc=True).limit(recent).execute()),
        )
        balances: list[Any] = balance.data
        rows: list[Any] = entries.data
        return Credits(
            balance=int(balances[0]["balance"]) if balances else 0,
            entries=[CreditEntry(delta=r["delta"], reason=r["reason"], session_id=r["session_id"], at=r["created_at"])
                     for r in rows],
        )

    async def open_checkout(self, customer_id: UUID, intake_id: UUID, success_url: str, cancel_url: str,
                            expires_in_seconds: int) -> PaymentRow:
        """The intake's payment with its stored Checkout request (public.open_checkout decides)."""
        row = await self.rpc.call("open_checkout", {
            "customer_id": str(customer_id), "intake_id": str(intake_id), "success_url": success_url,
            "cancel_url": cancel_url, "expires_in": f"{expires_in_seconds} seconds",
        })
        return PaymentRow.model_validate(row)

    async def record_checkout_opened(self, payment_id: UUID, checkout_id: str, url: str, expires_at: int,
                                     ) -> PaymentRow:
        """Stripe's answer to the payment's Checkout request (expires_at: epoch seconds)."""
        row = await self.rpc.call("record_checkout_opened", {
            "payment_id": str(payment_id), "checkout_session_id": checkout_id, "checkout_url": url,
            "expires_at": datetime.fromtimestamp(expires_at, UTC).isoformat(),
        })
        return PaymentRow.model_validate(row)

    async def payment_of_checkout(self, checkout_id: str) -> PaymentRow | None:
        response = await guard(
            self.client.from_("payments")
            .select("id,status,checkout_session_id,checkout_url,session_id,idempotency_key,request")
            .eq("checkout_session_id", checkout_id).execute()
        )
        return PaymentRow.model_validate(response.data[0]) if response.data else None

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
