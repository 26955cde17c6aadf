"""F: the floor: a bare ASGI callable (no framework), PyJWT and one aiohttp keep-alive session to
PostgREST, nothing else: no request ids, logs, metrics or error model. `python -m bench.peers.floor --port N`."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import jwt

from bench.peers import RPC, env, rpc_args, serve, started

REST_URL, SERVICE_KEY, JWT_SECRET = env()
HEADERS = {"apikey": SERVICE_KEY, "authorization": f"Bearer {SERVICE_KEY}", "content-type": "application/json",
           "accept": "application/json"}
state: dict[str, Any] = {}

Scope = dict[str, Any]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["method"] == "GET" and scope["path"] == "/healthz":
        await respond(send, 200, {"status": "ok"})
        return
    if scope["method"] != "POST" or scope["path"] != "/api/intake/start":
        await respond(send, 404, {"error": "not found"})
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    token = dict(scope["headers"]).get(b"authorization", b"").decode().removeprefix("Bearer ")
    try:
        user = jwt.decode(token, JWT_SECRET, algorithms=["HS256"], audience="authenticated")["sub"]
        data = json.loads(body)
    except (jwt.PyJWTError, ValueError):
        await respond(send, 401, {"error": "invalid token or body"})
        return
    plan = state["plans"].get(data.get("plan"))
    if plan is None or not plan["is_free"]:
        await respond(send, 400, {"error": "not a free plan"})
        return
    args = rpc_args(user, data["plan"], data.get("intake_id"))
    session: aiohttp.ClientSession = state["session"]
    async with session.post(f"{REST_URL}/rpc/{RPC}", data=json.dumps(args).encode()) as response:
        result = json.loads(await response.read())
        status = response.status
    if status != 200:
        await respond(send, status, {"error": result.get("message"), "code": result.get("code")})
        return
    await respond(send, 200, started(data["plan"], args["intake_id"], result["session_id"]))


async def respond(send: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            session = aiohttp.ClientSession(headers=HEADERS, connector=aiohttp.TCPConnector(limit=100))
            async with session.get(f"{REST_URL}/plans", params={"select": "*", "active": "eq.true"}) as response:
                state["plans"] = {p["code"]: p for p in await response.json()}
            state["session"] = session
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await state["session"].close()
            await send({"type": "lifespan.shutdown.complete"})
            return


if __name__ == "__main__":
    serve(app)
