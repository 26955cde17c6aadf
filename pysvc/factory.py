"""The only caller of `public.create_session_record`: one RPC through PostgREST, typed both ways.

Free sessions (intake) and paid ones (Stripe) both come through here; the function itself does the
checking, locking and writing in one transaction, so this module only validates shapes, sends one
request and turns PostgREST's errors into the package's exceptions.
"""

from __future__ import annotations

import asyncio
import json
from enum import StrEnum
from typing import Any, NoReturn
from uuid import UUID

import httpx
from postgrest import AsyncPostgrestClient, SyncPostgrestClient
from postgrest.exceptions import APIError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pysvc.errors import (
    ActiveSessionExists,
    BackendUnavailable,
    InsufficientCredits,
    InvalidSessionRequest,
    SessionError,
)

RPC = "create_session_record"


class SessionType(StrEnum):
    chat = "chat"
    video = "video"
    diagnostic = "diagnostic"


class PaymentMethod(StrEnum):
    free = "free"
    stripe = "stripe"
    credits = "credits"


class RoutingType(StrEnum):
    broadcast = "broadcast"
    workshop_only = "workshop_only"
    hybrid = "hybrid"
    priority_broadcast = "priority_broadcast"


PLAN_CODE = r"^[a-z0-9][a-z0-9-]{0,39}$"
CHECKOUT_SESSION_ID = r"^cs_(test|live)_[A-Za-z0-9]{1,250}$"


class CreateSessionParams(BaseModel):
    """The RPC's arguments, checked before any request is made."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: UUID
    plan: str = Field(pattern=PLAN_CODE)
    intake_id: UUID
    payment_method: PaymentMethod
    type: SessionType | None = None
    stripe_session_id: str | None = Field(default=None, pattern=CHECKOUT_SESSION_ID)
    amount_paid: int | None = Field(default=None, ge=0, le=2**31 - 1)
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3}$")
    customer_email: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")
    urgent: bool = False
    is_specialist: bool = False
    preferred_mechanic_id: UUID | None = None
    routing_type: RoutingType = RoutingType.broadcast

    def rpc_payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class CreateSessionResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    session_id: UUID
    session_type: SessionType
    status: str
    redirect_url: str
    created: bool


def parse_params(data: dict[str, Any]) -> CreateSessionParams:
    """Build params from untrusted data (Stripe metadata, say), as InvalidSessionRequest if bad."""
    try:
        return CreateSessionParams.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "request"
        raise InvalidSessionRequest(f"{field}: {first['msg']}", code="INVALID_PARAMS") from exc


# PostgREST / PostgreSQL error classes that mean "try again later", not "you sent something wrong".
_TRANSIENT_PREFIXES = ("PGRST000", "PGRST001", "PGRST002", "PGRST003", "08", "40", "53", "57", "58", "XX")


def _raise_for(error: APIError) -> NoReturn:
    code = error.code or ""
    message = error.message or code
    if code == "ACTIVE_SESSION_EXISTS":
        active = _details(error)
        raise ActiveSessionExists(
            message,
            session_id=str(active.get("activeSessionId", "")),
            session_type=str(active.get("activeSessionType", "")),
            status=str(active.get("activeSessionStatus", "")),
        )
    if code == "INSUFFICIENT_CREDITS":
        raise InsufficientCredits(message, details=_details(error))
    if is_transient(code):
        raise BackendUnavailable(f"PostgREST: {message}", details=error.details)
    if code.isupper() and code.replace("_", "").isalpha():
        raise InvalidSessionRequest(message, code=code)
    # Anything else (permission denied, bad key, missing function) is our misconfiguration.
    raise SessionError(f"{code}: {message}", code="SESSION_BACKEND_ERROR", details=error.details)


def is_transient(code: str) -> bool:
    """A PostgREST error code that means "try again later". postgrest-py reports a body that is
    not PostgREST's (a proxy's 502 page) by its HTTP status instead."""
    is_http_5xx = len(code) == 3 and code.isdigit() and code >= "500"
    return code.startswith(_TRANSIENT_PREFIXES) or is_http_5xx


def _details(error: APIError) -> dict[str, Any]:
    details = error.details
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            return {}
    return details if isinstance(details, dict) else {}


def service_headers(service_role_key: str) -> dict[str, str]:
    # Hosted Supabase's gateway wants the key as `apikey`; PostgREST wants the bearer JWT.
    return {
        "apikey": service_role_key,
        "Authorization": f"Bearer {service_role_key}",
        "Accept": "application/json",
        "Content-Type": "application/json",
    }


def sync_client(rest_url: str, service_role_key: str, *, timeout: float = 10.0) -> SyncPostgrestClient:
    headers = service_headers(service_role_key)
    http = httpx.Client(base_url=rest_url, headers=headers, timeout=timeout)
    return SyncPostgrestClient(rest_url, headers=headers, http_client=http)


def async_client(rest_url: str, service_role_key: str, *, timeout: float = 10.0) -> AsyncPostgrestClient:
    """One keep-alive connection pool to PostgREST, to be shared by everything in a process."""
    headers = service_headers(service_role_key)
    http = httpx.AsyncClient(
        base_url=rest_url, headers=headers, timeout=timeout,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
    )
    return AsyncPostgrestClient(rest_url, headers=headers, http_client=http)


class SessionFactory:
    """Synchronous client (CLIs, scripts, benchmarks)."""

    def __init__(self, rest_url: str, service_role_key: str, *, timeout: float = 10.0) -> None:
        self.client = sync_client(rest_url, service_role_key, timeout=timeout)

    def create_session_record(self, params: CreateSessionParams) -> CreateSessionResult:
        try:
            response = self.client.rpc(RPC, params.rpc_payload()).execute()
        except APIError as exc:
            _raise_for(exc)
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"PostgREST unreachable: {exc}") from exc
        return CreateSessionResult.model_validate(response.data)

    def close(self) -> None:
        self.client.session.close()


# Calls beyond PostgREST's pool (10 by default) would only queue there; queueing them here is cheaper
# than inside the HTTP client's pool (docs/benchmarks.md: +20 % and p99 363 -> 96 ms at 32 clients).
MAX_IN_FLIGHT = 10


class AsyncSessionFactory:
    """The same call for the async API; one instance (one connection pool) per process."""

    def __init__(
        self, rest_url: str, service_role_key: str, *, timeout: float = 10.0, max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.client = async_client(rest_url, service_role_key, timeout=timeout)
        self.in_flight = asyncio.Semaphore(max_in_flight)

    @classmethod
    def from_client(cls, client: AsyncPostgrestClient, *, max_in_flight: int = MAX_IN_FLIGHT) -> AsyncSessionFactory:
        """Share an existing PostgREST client (and its connection pool)."""
        factory = cls.__new__(cls)
        factory.client = client
        factory.in_flight = asyncio.Semaphore(max_in_flight)
        return factory

    async def create_session_record(self, params: CreateSessionParams) -> CreateSessionResult:
        try:
            async with self.in_flight:
                response = await self.client.rpc(RPC, params.rpc_payload()).execute()
        except APIError as exc:
            _raise_for(exc)
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"PostgREST unreachable: {exc}") from exc
        return CreateSessionResult.model_validate(response.data)

    async def aclose(self) -> None:
        await self.client.session.aclose()
