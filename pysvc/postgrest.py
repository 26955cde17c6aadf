"""PostgREST as this service talks to it: one client per process, and every failure as an ApiError.

`connect()` builds the client: one aiohttp keep-alive pool, no retries (a failure answers at once),
used by postgrest-py's query builder through httpx and by `Rpc` directly. `Rpc.call()` posts to
`/rpc/<function>` and turns the answer's HTTP status and `code` into the package's errors
(`pysvc.errors.from_sql`); with any other postgrest-py client (a `supabase` client's) it posts through
that client's httpx session instead. `guard()` does the same for table reads and writes made with
postgrest-py's query builder, whose errors carry no status.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
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


class Pool:
    """One aiohttp session (keep-alive pool) per process, made on first use, inside the event loop."""

    def __init__(self, *, connections: int = 100, timeout: float = 10.0) -> None:
        self.connections = connections
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __call__(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class PooledClient(AsyncPostgrestClient):
    """postgrest-py's client over the process's aiohttp pool, which `Rpc` also posts to directly."""

    def __init__(self, rest_url: str, service_role_key: str, *, timeout: float = 10.0) -> None:
        headers = service_headers(service_role_key)
        self.pool = Pool(timeout=timeout)
        limits = httpx.Limits(max_connections=self.pool.connections, max_keepalive_connections=self.pool.connections)
        http = httpx.AsyncClient(
            base_url=rest_url, headers=headers, timeout=timeout, limits=limits,
            # aiohttp under httpx: the same API, a third of the CPU per call (docs/benchmarks.md)
            transport=AiohttpTransport(limits=limits, client=self.pool),
        )
        super().__init__(rest_url, headers=headers, http_client=http, retry_enabled=False)

    async def aclose(self) -> None:
        await super().aclose()
        await self.pool.aclose()


def connect(rest_url: str, service_role_key: str, *, timeout: float = 10.0) -> PooledClient:
    """One keep-alive connection pool to PostgREST, shared by everything in a process."""
    return PooledClient(rest_url, service_role_key, timeout=timeout)


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
    including the one a `supabase` client holds (`Rpc(supabase_client.postgrest)`); with `connect()`'s
    it posts over aiohttp directly, without httpx's request and response models (docs/benchmarks.md)."""

    def __init__(self, client: AsyncPostgrestClient, *, max_in_flight: int = MAX_IN_FLIGHT,
                 metrics: Metrics | None = None) -> None:
        self.client = client
        self.metrics = metrics or Metrics()  # latency by function (pysvc_rpc_duration_seconds)
        self.in_flight = asyncio.Semaphore(max_in_flight)
        self.base = str(client.base_url).rstrip("/")
        self.pool = client.pool if isinstance(client, PooledClient) else None
        self.headers = dict(client.headers)

    async def call(self, function: str, args: dict[str, Any]) -> Any:
        return _answer(*await self._call(function, json.dumps(args).encode()))

    async def call_json(self, function: str, body: bytes) -> bytes:
        """`call` with the arguments already JSON (a model's `model_dump_json`): the answer's JSON as it
        came, for a model's `model_validate_json`; failures raised as `call` raises them."""
        status, raw = await self._call(function, body)
        if 200 <= status < 300:
            return raw
        raise _failure(status, raw)

    async def _call(self, function: str, body: bytes) -> tuple[int, bytes]:
        async with self.in_flight:
            started = time.perf_counter()
            try:
                return await self._send("POST", f"{self.base}/rpc/{function}", body)
            finally:
                self.metrics.rpc_observe(function, time.perf_counter() - started)

    async def select(self, table: str, params: dict[str, str]) -> list[Any]:
        """A table read in PostgREST's query syntax (`{"id": "eq.…", "select": "…"}`), without postgrest-py's
        query builder: the reads a customer's client polls."""
        async with self.in_flight:
            status, raw = await self._send("GET", f"{self.base}/{table}", None, params)
        rows = _answer(status, raw)
        return rows if isinstance(rows, list) else []

    async def _send(self, method: str, url: str, body: bytes | None,
                    params: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self.pool is None:
            try:
                answer = await self.client.session.request(method, url, content=body, params=params,
                                                           headers=self.client.headers)
            except httpx.TransportError as exc:
                raise BackendUnavailable(f"PostgREST unreachable: {exc}") from exc
            return answer.status_code, answer.content
        try:
            async with self.pool().request(method, url, data=body, params=params, headers=self.headers) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise BackendUnavailable(f"PostgREST unreachable: {exc or type(exc).__name__}") from exc

    async def aclose(self) -> None:
        await self.client.aclose()


def _answer(status: int, raw: bytes) -> Any:
    """A PostgREST answer's JSON, or its error raised as an ApiError."""
    if not 200 <= status < 300:
        raise _failure(status, raw)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _failure(status: int, raw: bytes) -> ApiError:
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return error_for(status, body if isinstance(body, dict) else {})


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
