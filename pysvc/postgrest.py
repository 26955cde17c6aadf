"""PostgREST as this service talks to it: one client per process, and every failure as an ApiError.

`connect()` builds the client (one keep-alive pool, no retries: a failure answers at once).
`Rpc.call()` posts to `/rpc/<function>` and turns the answer's HTTP status and `code` into the
package's errors (`pysvc.errors.from_sql`). `guard()` does the same for table reads and writes
made with postgrest-py's query builder, whose errors carry no status.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx
from httpx_aiohttp import AiohttpTransport
from postgrest import AsyncPostgrestClient
from postgrest.exceptions import APIError

from pysvc.errors import ApiError, BackendUnavailable, Conflict, Misconfigured, from_sql
from pysvc.metrics import Metrics

T = TypeVar("T")

# Calls beyond PostgREST's pool (10 by default) would only queue there; queueing them here is cheaper
# than inside the HTTP client's pool (docs/benchmarks.md).
MAX_IN_FLIGHT = 10

# PostgREST codes and PostgreSQL error classes (the first two characters of a five-character
# SQLSTATE) that mean "try again later", not "you sent something wrong".
_TRANSIENT_PGRST = ("PGRST000", "PGRST001", "PGRST002", "PGRST003")
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "57", "58", "XX")


def service_headers(service_role_key: str) -> dict[str, str]:
    # Supabase's gateway wants the key as `apikey`; PostgREST wants the bearer JWT.
    return {
        "apikey": service_role_key,
        "Authorization": f"Bearer {service_role_key}",
        "Accept": "application/json",
        "Content-Type": "application/json",
    }


def connect(rest_url: str, service_role_key: str, *, timeout: float = 10.0) -> AsyncPostgrestClient:
    """One keep-alive connection pool to PostgREST, shared by everything in a process."""
    headers = service_headers(service_role_key)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    http = httpx.AsyncClient(
        base_url=rest_url, headers=headers, timeout=timeout, limits=limits,
        # aiohttp under httpx: the same API, a third of the CPU per call (docs/benchmarks.md)
        transport=AiohttpTransport(limits=limits),
    )
    return AsyncPostgrestClient(rest_url, headers=headers, http_client=http, retry_enabled=False)


def is_transient(code: object) -> bool:
    """A PostgREST error code that means "try again later". postgrest-py reports a body that is not
    PostgREST's (a proxy's 502 page, a gateway's 401) by its HTTP status instead, as a string or an
    int: three digits, transient only when 5xx, and never read as a SQLSTATE class ("401" is not 40)."""
    text = str(code or "")
    if len(text) == 3 and text.isdigit():
        return int(text) >= 500
    return text in _TRANSIENT_PGRST or (len(text) == 5 and text.startswith(_TRANSIENT_SQLSTATE_CLASSES))


def error_for(status: int, body: dict[str, Any]) -> ApiError:
    """The error for a PostgREST answer with this status and JSON body."""
    code = str(body.get("code") or "")
    message = body.get("message") if isinstance(body.get("message"), str) else None
    if status >= 500 or is_transient(code):
        return BackendUnavailable(f"PostgREST {status}: {message or code or 'no error body'}")
    if code.isupper() and code.replace("_", "").isalpha():  # ours: raised by private.raise_api_error
        return from_sql(code, message, status, _details(body.get("details")))
    if status == 409:  # a unique or foreign key the database enforced: the state, not our setup
        return Conflict(message)
    # 401/403/404 from PostgREST itself (bad key, missing grant, unknown function): ours to fix.
    return Misconfigured(f"PostgREST {status} {code or '(no code)'}: {message}")


def _details(details: object) -> dict[str, Any]:
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            return {}
    return details if isinstance(details, dict) else {}


class Rpc:
    """Calls SQL functions through PostgREST's `/rpc/`. Works with any postgrest-py async client,
    including the one a `supabase` client holds (`Rpc(supabase_client.postgrest)`)."""

    def __init__(self, client: AsyncPostgrestClient, *, max_in_flight: int = MAX_IN_FLIGHT,
                 metrics: Metrics | None = None) -> None:
        self.client = client
        self.metrics = metrics or Metrics()  # latency by function (pysvc_rpc_duration_seconds)
        self.in_flight = asyncio.Semaphore(max_in_flight)
        self.base = str(client.base_url).rstrip("/")

    async def call(self, function: str, args: dict[str, Any]) -> Any:
        try:
            async with self.in_flight:
                with self.metrics.time_rpc(function):
                    response = await self.client.session.post(
                        f"{self.base}/rpc/{function}", json=args, headers=self.client.headers,
                    )
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"PostgREST unreachable: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success:
            return body
        raise error_for(response.status_code, body if isinstance(body, dict) else {})

    async def aclose(self) -> None:
        await self.client.aclose()


async def guard(request: Awaitable[T]) -> T:
    """Await a query-builder request; its failures as ApiErrors."""
    try:
        return await request
    except httpx.TransportError as exc:
        raise BackendUnavailable(f"PostgREST unreachable: {exc}") from exc
    except APIError as exc:
        if is_transient(exc.code):
            raise BackendUnavailable(f"PostgREST: {exc.message}") from exc
        raise Misconfigured(f"PostgREST {exc.code}: {exc.message}") from exc
