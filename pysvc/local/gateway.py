"""A Supabase-like API gateway for the local stack: one URL, as hosted Supabase and the Supabase
CLI's Kong serve (port 54321 by default), that

- proxies `/rest/v1/*` to PostgREST (the prefix stripped; method, headers, status and body kept);
- serves the project's JWKS at `/auth/v1/.well-known/jwks.json`;
- like Supabase's gateway, turns an `apikey` header into `Authorization: Bearer` when the request
  has none, and swaps the opaque keys (`sb_publishable_…`, `sb_secret_…`) for the JWTs they stand
  for; an unknown `sb_` key is 401.

It is not the performance path: benchmarks talk to PostgREST directly (SUPABASE_REST_URL).
The stack runs it as `python -m pysvc.local.gateway <config.json>`; the config file holds
`{"host", "port", "upstream", "jwks", "api_keys": {opaque key: JWT}}`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

HEALTH_PATH = "/_gateway/health"
JWKS_PATH = "/auth/v1/.well-known/jwks.json"

# Connection-level headers are the proxy's own business (RFC 9110 §7.6.1); lengths and encodings
# are recomputed because httpx hands over a decoded body.
_NOT_FORWARDED = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "host", "content-length",
}
_NOT_RETURNED = _NOT_FORWARDED | {"content-encoding"}


def _bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


def create_app(upstream: str, jwks: dict[str, Any], api_keys: dict[str, str]) -> Starlette:
    state: dict[str, httpx.AsyncClient] = {}

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=upstream.rstrip("/"), timeout=60) as client:
            state["client"] = client
            yield

    async def rest(request: Request) -> Response:
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _NOT_FORWARDED]
        apikey = request.headers.get("apikey")
        token = _bearer(request.headers.get("authorization"))
        for presented in (apikey, token):
            if presented and presented.startswith("sb_") and presented not in api_keys:
                return JSONResponse({"message": "Invalid API key", "hint": "Double check your Supabase `anon` "
                                     "or `service_role` API key."}, status_code=401)
        if token in api_keys:
            token = api_keys[token]
        elif token is None and apikey:
            token = api_keys.get(apikey, apikey)
        headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
        if token:
            headers.append(("authorization", f"Bearer {token}"))
        url = "/" + request.path_params.get("path", "")
        if request.url.query:
            url += "?" + request.url.query
        try:
            answer = await state["client"].request(
                request.method, url, headers=headers, content=await request.body(),
            )
        except httpx.HTTPError as exc:
            return JSONResponse(
                {"message": f"PostgREST did not answer ({type(exc).__name__}): `pysvc stack start` restarts it"},
                status_code=502,
            )
        returned = {k: v for k, v in answer.headers.items() if k.lower() not in _NOT_RETURNED}
        return Response(answer.content, status_code=answer.status_code, headers=returned)

    async def jwks_endpoint(_: Request) -> Response:
        return JSONResponse(jwks, headers={"Cache-Control": "public, max-age=600"})

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    methods = ["GET", "HEAD", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"]
    return Starlette(
        routes=[
            Route("/rest/v1/{path:path}", rest, methods=methods),
            Route("/rest/v1", rest, methods=methods),
            Route(JWKS_PATH, jwks_endpoint, methods=["GET", "HEAD"]),
            Route(HEALTH_PATH, health, methods=["GET", "HEAD"]),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m pysvc.local.gateway CONFIG.json", file=sys.stderr)
        return 2
    config = json.loads(Path(argv[0]).read_text())
    app = create_app(config["upstream"], config["jwks"], config.get("api_keys", {}))
    uvicorn.run(app, host=config.get("host", "127.0.0.1"), port=int(config["port"]),
                log_level="warning", access_log=False, server_header=False, date_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
