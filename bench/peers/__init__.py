"""Comparison servers for the benchmark, not part of the product: the same free intake
(`POST /api/intake/start`: token, plan check, the one RPC) written two other ways, each served by the
same uvicorn as `pysvc serve` so that only the code differs.

- E, `first`: what a Python developer writes first: one FastAPI route, PyJWT, supabase-py's async client.
- F, `floor`: a bare ASGI callable, PyJWT and one aiohttp keep-alive session to PostgREST, nothing else.

Both read SUPABASE_REST_URL, SUPABASE_SERVICE_ROLE_KEY and SUPABASE_JWT_SECRET, load the active plans
once at start-up (pysvc caches the same catalog for 30 s) and send the RPC the arguments pysvc sends.
"""

from __future__ import annotations

import argparse
import os
import uuid
from typing import Any

import uvicorn

RPC = "create_session_record"


def env() -> tuple[str, str, str]:
    return (os.environ["SUPABASE_REST_URL"].rstrip("/"), os.environ["SUPABASE_SERVICE_ROLE_KEY"],
            os.environ["SUPABASE_JWT_SECRET"])


def rpc_args(customer: str, plan: str, intake_id: str | None) -> dict[str, Any]:
    """What pysvc's factory sends for a free intake with no descriptive fields."""
    return {
        "customer_id": customer, "plan": plan, "intake_id": intake_id or str(uuid.uuid4()),
        "payment_method": "free", "urgent": False, "is_specialist": False, "routing_type": "broadcast",
        "intake": {},
    }


def started(plan: str, intake_id: str, session_id: str) -> dict[str, str]:
    return {"redirect": f"/intake/waiver?session={session_id}&plan={plan}&intake_id={intake_id}",
            "intakeId": intake_id, "sessionId": session_id}


def serve(app: Any) -> None:
    """The options `pysvc serve` runs uvicorn with."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
