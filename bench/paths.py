"""The four ways of creating a session that the suite compares (see the package docstring)."""

from __future__ import annotations

import datetime as dt
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

import httpx
from psycopg_pool import AsyncConnectionPool

from bench.harness import Workload
from bench.seed import Pair, Seeder
from pysvc.factory import AsyncSessionFactory, CreateSessionParams, PaymentMethod, service_headers
from pysvc.local.stack import mint_key

PLAN = "free"
SESSION_TYPE = "chat"  # the free plans are chat sessions
MAX_CONCURRENCY = 32


class PairWorkload(Workload[Pair]):
    """Workloads that consume a fresh customer + intake per session."""

    def __init__(self, seeder: Seeder) -> None:
        self.seeder = seeder

    async def tickets(self, n: int) -> Sequence[Pair]:
        return await self.seeder.pairs(n, plan=PLAN)


class DatabaseLimit(PairWorkload):
    """A: the function itself, over a psycopg pool as the stack's superuser; no HTTP."""

    name = "A"

    def __init__(self, seeder: Seeder, database_url: str, *, size: int = MAX_CONCURRENCY) -> None:
        super().__init__(seeder)
        self.pool = AsyncConnectionPool(
            database_url, min_size=size, max_size=size, open=False, kwargs={"autocommit": True},
        )

    async def open(self) -> None:
        await self.pool.open(wait=True)

    async def create(self, ticket: Pair) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                "select public.create_session_record(customer_id => %s, plan => %s, intake_id => %s,"
                " payment_method => %s)",
                (ticket.customer, PLAN, ticket.intake, "free"),
            )

    async def aclose(self) -> None:
        await self.pool.close()


class ProductPath(PairWorkload):
    """B: what the product runs: one AsyncSessionFactory (one HTTP pool) → PostgREST → the RPC."""

    name = "B"

    def __init__(self, seeder: Seeder, rest_url: str, service_role_key: str) -> None:
        super().__init__(seeder)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # postgrest-py's `timeout` deprecation
            self.factory = AsyncSessionFactory(rest_url, service_role_key)

    async def create(self, ticket: Pair) -> None:
        await self.factory.create_session_record(
            CreateSessionParams(
                customer_id=ticket.customer, plan=PLAN, intake_id=ticket.intake, payment_method=PaymentMethod.free,
            ),
        )

    async def aclose(self) -> None:
        await self.factory.aclose()


class ActiveSessionFound(Exception):
    """C's own check saw an active session: the request is refused (the seed's 409)."""

    code = "ACTIVE_SESSION_EXISTS"


class StepFailed(Exception):
    """One of C's requests failed. `code` is PostgREST's (23505 is a unique violation)."""

    def __init__(self, step: str, response: httpx.Response) -> None:
        self.step = step
        self.status = response.status_code
        body: dict[str, Any] = {}
        try:
            parsed = response.json()
            body = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            pass
        self.pg_code = str(body.get("code", ""))
        self.message = str(body.get("message", response.text[:200]))
        self.code = f"{step}:{self.status}:{self.pg_code}" + (":one_active" if self.refused_by_active_index else "")
        super().__init__(f"{step} -> {self.status} {self.pg_code} {self.message}")

    @property
    def refused_by_active_index(self) -> bool:
        return self.step == "sessions" and self.pg_code == "23505" and "one_active" in self.message


class PartialWrite(Exception):
    """The session row exists but a later request failed: what the seed leaves behind silently."""

    def __init__(self, failures: list[StepFailed]) -> None:
        self.failures = failures
        self.code = ",".join(f.code for f in failures)
        super().__init__(self.code)


class OriginalDesign(PairWorkload):
    """C: the seed's createSessionRecord re-created over the same PostgREST: a GET check, then four
    separate writes (session, participant upsert, assignment, event), no transaction. Like the seed
    it goes on after a failed participant/assignment/event write; here that is reported as PartialWrite."""

    name = "C"

    def __init__(self, seeder: Seeder, rest_url: str, service_role_key: str) -> None:
        super().__init__(seeder)
        headers = dict(service_headers(service_role_key))
        self.client = httpx.AsyncClient(
            base_url=rest_url,
            headers=headers,
            timeout=30,
            limits=httpx.Limits(max_connections=2 * MAX_CONCURRENCY, max_keepalive_connections=2 * MAX_CONCURRENCY),
        )

    async def create(self, ticket: Pair) -> None:
        customer = str(ticket.customer)
        # 1. checkActiveSession(customerId)
        check = await self.client.get(
            "/sessions",
            params={"customer_user_id": f"eq.{customer}", "is_active": "is.true", "select": "id", "limit": "1"},
        )
        if check.status_code != 200:
            raise StepFailed("check", check)
        if check.json():
            raise ActiveSessionFound(customer)
        metadata = {
            "payment_method": "free",
            "amount_paid": None,
            "urgent": False,
            "is_specialist": False,
            "preferred_mechanic_id": None,
            "routing_type": "broadcast",
            "source": "intake",
        }
        # 2. insert the session, .select('id').single()
        created = await self.client.post(
            "/sessions",
            params={"select": "id"},
            headers={"Prefer": "return=representation", "Accept": "application/vnd.pgrst.object+json"},
            json={
                "customer_user_id": customer,
                "type": SESSION_TYPE,
                "status": "pending",
                "plan": PLAN,
                "intake_id": str(ticket.intake),
                "stripe_session_id": None,
                "metadata": metadata,
            },
        )
        if created.status_code != 201:
            raise StepFailed("sessions", created)
        session_id = created.json()["id"]
        failures: list[StepFailed] = []
        # 3. upsert the customer participant (onConflict: session_id,user_id)
        participant = await self.client.post(
            "/session_participants",
            params={"on_conflict": "session_id,user_id"},
            headers={"Prefer": "resolution=merge-duplicates,return=minimal"},
            json={"session_id": session_id, "user_id": customer, "role": "customer"},
        )
        if participant.status_code not in (200, 201, 204):
            failures.append(StepFailed("session_participants", participant))
        # 4. the queued assignment (session_type, plan and urgent are NOT NULL in this schema)
        assignment = await self.client.post(
            "/session_assignments",
            headers={"Prefer": "return=minimal"},
            json={
                "session_id": session_id,
                "status": "queued",
                "offered_at": dt.datetime.now(dt.UTC).isoformat(),
                "session_type": SESSION_TYPE,
                "plan": PLAN,
                "urgent": False,
            },
        )
        if assignment.status_code not in (201, 204):
            failures.append(StepFailed("session_assignments", assignment))
        # 5. the created event
        event = await self.client.post(
            "/session_events",
            headers={"Prefer": "return=minimal"},
            json={
                "session_id": session_id,
                "event_type": "created",
                "user_id": customer,
                "metadata": {
                    "type": SESSION_TYPE,
                    "plan": PLAN,
                    "payment_method": "free",
                    "amount_paid": None,
                    "urgent": False,
                    "source": "intake",
                },
            },
        )
        if event.status_code not in (201, 204):
            failures.append(StepFailed("session_events", event))
        if failures:
            raise PartialWrite(failures)

    async def aclose(self) -> None:
        await self.client.aclose()


class ApiFailed(Exception):
    def __init__(self, response: httpx.Response) -> None:
        self.code = str(response.status_code)
        super().__init__(f"{response.status_code} {response.text[:200]}")


class WholeApi(Workload[str]):
    """D: `POST /api/intake/start` on the API server, as a signed-in customer (a Supabase access
    token for an existing auth.users row). The API writes the intake and creates the session."""

    name = "D"

    def __init__(self, seeder: Seeder, api_url: str, jwt_secret: str) -> None:
        self.seeder = seeder
        self.jwt_secret = jwt_secret
        self.client = httpx.AsyncClient(
            base_url=api_url,
            timeout=30,
            limits=httpx.Limits(max_connections=2 * MAX_CONCURRENCY, max_keepalive_connections=2 * MAX_CONCURRENCY),
        )

    async def tickets(self, n: int) -> Sequence[str]:
        return [self.token(user) for user in await self.seeder.users(n)]

    def token(self, user: uuid.UUID) -> str:
        return mint_key(self.jwt_secret, "authenticated", sub=str(user), aud="authenticated", lifetime=3600)

    async def create(self, ticket: str) -> None:
        response = await self.client.post(
            "/api/intake/start", json={"plan": PLAN}, headers={"Authorization": f"Bearer {ticket}"},
        )
        if response.status_code != 200:
            raise ApiFailed(response)
        try:
            body = response.json()
        except ValueError as exc:
            raise ApiFailed(response) from exc
        if not isinstance(body, dict) or "sessionId" not in body:
            raise ApiFailed(response)

    async def aclose(self) -> None:
        await self.client.aclose()
