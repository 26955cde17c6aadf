"""The only caller of `public.create_session_record`: one RPC, typed both ways.

Free sessions (intake) and paid ones (Stripe) both come through here; the function itself does the
checking, locking and writing in one transaction, so this module only checks shapes and sends one
request. Refusals arrive as the classes in `pysvc.errors`, with the status the SQL chose.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any
from uuid import UUID

from postgrest import AsyncPostgrestClient
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pysvc.enums import CHECKOUT_ID, PLAN_CODE, PaymentMethod, RoutingType, SessionStatus, SessionType
from pysvc.errors import InvalidParams, SessionConflict
from pysvc.metrics import Metrics
from pysvc.postgrest import Rpc, connect

if TYPE_CHECKING:
    from supabase import AsyncClient, Client

RPC = "create_session_record"


class CreateSessionParams(BaseModel):
    """The RPC's arguments, checked before any request is made."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: UUID
    plan: str = Field(pattern=PLAN_CODE)
    intake_id: UUID
    payment_method: PaymentMethod
    type: SessionType | None = None
    stripe_session_id: str | None = Field(default=None, pattern=CHECKOUT_ID)
    amount_paid: int | None = Field(default=None, ge=0, le=2**31 - 1)
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    customer_email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    urgent: bool = False
    is_specialist: bool = False
    preferred_mechanic_id: UUID | None = None
    routing_type: RoutingType = RoutingType.broadcast
    intake: dict[str, Any] | None = None  # the intake's fields: it is written in the same transaction
    payment_intent: str | None = Field(default=None, max_length=255)  # charges are matched to payments by it
    payment_id: UUID | None = None  # the Checkout's metadata.payment_id: finds the payment if its id was not recorded

    @classmethod
    def parse(cls, data: dict[str, Any]) -> CreateSessionParams:
        """From untrusted data (Stripe metadata, say); InvalidParams names the first bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "request"
            raise InvalidParams(f"{field}: {first['msg']}") from exc


class CreateSessionResult(BaseModel):
    """A session (new or the one a retry already made); for a paid checkout that could not become
    one, no session and `refunded`: its full refund was requested in the same transaction."""

    model_config = ConfigDict(frozen=True)

    session_id: UUID | None = None
    session_type: SessionType | None = None
    status: SessionStatus | None = None
    created: bool
    refunded: bool = False
    payment_id: UUID | None = None
    payment_status: str | None = None
    reason: str | None = None  # why a paid checkout was refunded (the refusal's code)
    details: dict[str, Any] | None = None
    refund: dict[str, Any] | None = None  # the refund request: outbox_id, amount, idempotency_key

    def require_session(self) -> UUID:
        """The session, for the paths that always make one (free, credits) or raise."""
        if self.session_id is None:
            raise SessionConflict(f"no session was made ({self.reason or self.payment_status})")
        return self.session_id


class SessionFactory:
    """One per process: it shares the process's PostgREST client (and its connection pool)."""

    def __init__(self, rpc: Rpc, metrics: Metrics | None = None) -> None:
        self.rpc = rpc
        self.metrics = metrics or rpc.metrics  # sessions created, by payment method

    @classmethod
    def from_client(cls, client: AsyncPostgrestClient) -> SessionFactory:
        """From any postgrest-py async client, e.g. a `supabase` client's: `from_client(sb.postgrest)`."""
        return cls(Rpc(client))

    @classmethod
    def from_supabase(cls, client: AsyncClient | Client) -> SessionFactory:
        """From the `supabase` client a backend already holds (made with the service_role key):

            supabase = await acreate_client(SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY)
            factory = SessionFactory.from_supabase(supabase)
            result = await factory.create_session_record(params)
        """
        postgrest = client.postgrest
        if isinstance(postgrest, AsyncPostgrestClient):
            return cls.from_client(postgrest)
        # A sync client: the same URL and keys, in an async client of our own.
        return cls.from_client(AsyncPostgrestClient(str(postgrest.base_url), headers=dict(postgrest.headers),
                                                    retry_enabled=False))

    @classmethod
    def connect(cls, rest_url: str, service_role_key: str) -> SessionFactory:
        return cls.from_client(connect(rest_url, service_role_key))

    async def create_session_record(self, params: CreateSessionParams) -> CreateSessionResult:
        # JSON straight from and into the models (pydantic's own encoder and parser, no dict in between)
        raw = await self.rpc.call_json(RPC, params.model_dump_json(exclude_none=True).encode())
        result = CreateSessionResult.model_validate_json(raw)
        if result.created:
            self.metrics.session_created(params.payment_method)
        return result

    async def aclose(self) -> None:
        await self.rpc.aclose()


def create_session_record(rest_url: str, service_role_key: str, params: CreateSessionParams) -> CreateSessionResult:
    """For scripts and the CLI: one call, its own client, no event loop of the caller's."""

    async def once() -> CreateSessionResult:
        factory = SessionFactory.connect(rest_url, service_role_key)
        try:
            return await factory.create_session_record(params)
        finally:
            await factory.aclose()

    return asyncio.run(once())
