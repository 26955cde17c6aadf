"""The Python client's workloads (B_py, C) and what every HTTP path shares: the RPC's path, its
arguments and the service role's headers. Independent of pysvc's modules on purpose: the bench
talks to PostgREST and the API over HTTP only."""

from __future__ import annotations

import datetime as dt
import json
from abc import ABC, abstractmethod
from typing import Any

import httpx

from bench.seed import Pair

PLAN = "free"
SESSION_TYPE = "chat"  # the free plans are chat sessions
MAX_CONCURRENCY = 32
RPC_PATH = "/rpc/create_session_record"


def service_headers(service_role_key: str) -> dict[str, str]:
    """What the API sends PostgREST: the key as `apikey` (Supabase's gateway) and as the bearer JWT."""
    return {
        "apikey": service_role_key,
        "authorization": f"Bearer {service_role_key}",
        "content-type": "application/json",
    }


def rpc_body(ticket: Pair) -> str:
    """create_session_record's arguments for a free session (the call both the intake and the webhook
    paths make; optional parameters the function may gain later keep their defaults)."""
    return json.dumps({
        "customer_id": str(ticket.customer), "plan": PLAN, "intake_id": str(ticket.intake), "payment_method": "free",
    })


def python_client(rest_url: str, service_role_key: str) -> httpx.AsyncClient:
    """The one shared keep-alive client both B_py and C use."""
    return httpx.AsyncClient(
        base_url=rest_url,
        headers=service_headers(service_role_key),
        timeout=30,
        limits=httpx.Limits(max_connections=2 * MAX_CONCURRENCY, max_keepalive_connections=2 * MAX_CONCURRENCY),
    )


class PairWorkload(ABC):
    """One way of creating a session from a fresh customer + intake, over the Python client."""

    name: str

    def __init__(self, rest_url: str, service_role_key: str) -> None:
        self.client = python_client(rest_url, service_role_key)

    @abstractmethod
    async def create(self, ticket: Pair) -> None: ...

    async def aclose(self) -> None:
        await self.client.aclose()


class RpcFailed(Exception):
    """PostgREST refused the RPC; `code` is `<status>:<the function's code>` (e.g. 409:ACTIVE_SESSION_EXISTS)."""

    def __init__(self, response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = {}
        self.code = f"{response.status_code}:{body.get('code', '') if isinstance(body, dict) else ''}"
        super().__init__(f"{response.status_code} {response.text[:200]}")


class PythonRpc(PairWorkload):
    """B_py: the product's one RPC through the Python client (to compare with C on equal terms)."""

    name = "B_py"

    async def create(self, ticket: Pair) -> None:
        response = await self.client.post(RPC_PATH, content=rpc_body(ticket))
        if response.status_code != 200:
            raise RpcFailed(response)


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
