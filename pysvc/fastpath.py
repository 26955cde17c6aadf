"""`POST /api/intake/start`, the hot route, served without the framework's per-request machinery
(routing, dependency resolution, response-model validation): the same token check, body model,
service and response model as the route declared in `pysvc.routers.customer`, whose declaration
stays the OpenAPI document's (tests/test_openapi.py holds this handler to it). Inside the request-id
and body-limit middleware, so every request is still logged, limited and answered with an id; errors
are the app's one JSON shape. Measured: docs/benchmarks.md."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pysvc.errors import ApiError, Unauthenticated
from pysvc.responses import invalid_request, render
from pysvc.schemas import IntakeStart

if TYPE_CHECKING:
    from pysvc.deps import Services

PATH = "/api/intake/start"
JSON_HEADERS = [(b"content-type", b"application/json")]


class IntakeFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:  # the client went away, or the body limit already answered 413
            return
        svc: Services = scope["app"].state.services
        try:
            customer = await svc.tokens.user_id(bearer_token(scope))
            intake = parse_intake(body)
            started = await svc.intakes.start(customer, intake)
        except ApiError as exc:
            await render(exc)(scope, receive, send)
            return
        except ValidationError as exc:
            await invalid_request(exc.errors())(scope, receive, send)
            return
        payload = started.model_dump_json(exclude_none=True).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*JSON_HEADERS, (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})


def parse_intake(body: bytes) -> IntakeStart:
    """The body as the route's model. pydantic's JSON parser refuses an unpaired surrogate escape
    (\\ud800) as invalid JSON; the standard library reads it, so that the model answers INVALID_INTAKE
    as for NUL. Only bodies pydantic refused take that second look."""
    try:
        return IntakeStart.model_validate_json(body or b"null")
    except ValidationError as exc:
        if not any(e.get("type") == "json_invalid" for e in exc.errors()):
            raise
        try:
            data = json.loads(body)
        except ValueError:
            raise exc from None
        return IntakeStart.model_validate(data)


async def read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def bearer_token(scope: Scope) -> str:
    """The token of `Authorization: Bearer <token>`, as FastAPI's HTTPBearer reads it; 401 without one."""
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token:
                return token
            break
    raise Unauthenticated()
