"""E: the free intake as a Python developer writes it first: FastAPI, PyJWT, supabase-py's async client
(`acreate_client(...).rpc(...).execute()`). `python -m bench.peers.first --port N`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from uuid import UUID

import jwt
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from postgrest.exceptions import APIError
from pydantic import BaseModel
from supabase import AsyncClient, acreate_client
from yarl import URL

from bench.peers import RPC, env, rpc_args, serve, started

REST_URL, SERVICE_KEY, JWT_SECRET = env()
state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    supabase = await acreate_client(REST_URL, SERVICE_KEY)
    supabase.rest_url = URL(REST_URL)  # a bare PostgREST serves at /, not behind a gateway's /rest/v1
    plans = await supabase.table("plans").select("*").eq("active", True).execute()
    state["supabase"], state["plans"] = supabase, {p["code"]: p for p in plans.data}
    yield


app = FastAPI(lifespan=lifespan)
bearer = HTTPBearer()


class IntakeStart(BaseModel):
    plan: str
    intake_id: UUID | None = None


def current_user(credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> str:
    try:
        claims = jwt.decode(credentials.credentials, JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    except jwt.PyJWTError as exc:
        raise HTTPException(401, "invalid token") from exc
    return str(claims["sub"])


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/api/intake/start")
async def start_intake(body: IntakeStart, user: Annotated[str, Depends(current_user)]) -> dict[str, str]:
    plan = state["plans"].get(body.plan)
    if plan is None or not plan["is_free"]:
        raise HTTPException(400, "not a free plan")
    supabase: AsyncClient = state["supabase"]
    args = rpc_args(user, body.plan, str(body.intake_id) if body.intake_id else None)
    try:
        result = await supabase.rpc(RPC, args).execute()
    except APIError as exc:
        raise HTTPException(409 if exc.code == "ACTIVE_SESSION_EXISTS" else 502, exc.message) from exc
    data: dict[str, Any] = result.data  # type: ignore[assignment]
    return started(body.plan, args["intake_id"], data["session_id"])


if __name__ == "__main__":
    serve(app)
