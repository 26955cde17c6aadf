"""`POST /api/intake/start`, the hot route, served without the framework's per-request machinery
(routing, dependency resolution, response-model validation, the framework's own middleware): the same
token check, body model, service and response model as the route declared in
`pysvc.routers.customer`, whose declaration stays the OpenAPI document's (tests/test_openapi.py holds
this handler to it). `pysvc.api.Api` hands the route to it behind the same request-id and body-limit
middleware as every other route, so each request is still logged, limited and answered with an id;
errors are the app's one JSON shape. Measured: docs/benchmarks.md."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.types import Message, Receive, Scope, Send

from pysvc.errors import ApiError, Unauthenticated
from pysvc.responses import internal_error, invalid_request, render, unreadable_body
from pysvc.schemas import IntakeStart

if TYPE_CHECKING:
    from fastapi import FastAPI

    from pysvc.deps import Services

PATH = "/api/intake/start"
JSON_HEADERS = [(b"content-type", b"application/json")]
log = logging.getLogger("pysvc")


def matches(scope: Scope) -> bool:
    return bool(scope["type"] == "http" and scope["path"] == PATH and scope["method"] == "POST")


class IntakeFastPath:
    """The ASGI endpoint of the one route; `api` holds the services (built at start-up)."""

    def __init__(self, api: FastAPI) -> None:
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = await read_body(receive)
        if raw is None:  # the client went away, or the body limit already answered 413
            return
        svc: Services = self.api.state.services
        try:
            body = parse_body(scope, raw)
            customer = await svc.tokens.user_id(bearer_token(scope))
            if body is None:
                raise ValidationError.from_exception_data("IntakeStart", [{"type": "missing", "loc": ("body",),
                                                                           "input": None}])
            intake = IntakeStart.model_validate(body, from_attributes=True)  # as FastAPI validates a body
            started = await svc.intakes.start(customer, intake)
        except ApiError as exc:
            await render(exc)(scope, receive, send)
            return
        except ValidationError as exc:
            await invalid_request(exc.errors())(scope, receive, send)
            return
        except json.JSONDecodeError as exc:
            await invalid_request([{"loc": ("body", exc.pos), "msg": "JSON decode error"}])(scope, receive, send)
            return
        except UnreadableBody:
            await unreadable_body()(scope, receive, send)
            return
        except Exception as exc:  # the framework's last-resort handler is not in front of this route
            log.error("unhandled error", exc_info=exc)
            await internal_error()(scope, receive, send)
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


def parse_body(scope: Scope, raw: bytes) -> Any:
    """The body as FastAPI reads one for a model: None when empty, JSON when the content type is JSON
    (`application/json`, `application/*+json`), else the bytes themselves (which no model accepts)."""
    if not raw:
        return None
    for key, value in scope["headers"]:
        if key == b"content-type":
            kind, _, subtype = bytes(value).split(b";", 1)[0].strip().lower().partition(b"/")
            if kind == b"application" and (subtype == b"json" or subtype.endswith(b"+json")):
                try:
                    return json.loads(raw)
                except json.JSONDecodeError:
                    raise
                except Exception as exc:  # not UTF-8, nested too deep: FastAPI's 400, answered as 422
                    raise UnreadableBody() from exc
            break
    return raw


class UnreadableBody(Exception):
    """The body could not be read as JSON at all (FastAPI: "There was an error parsing the body")."""


def bearer_token(scope: Scope) -> str:
    """The token of `Authorization: Bearer <token>`, as FastAPI's HTTPBearer reads it; 401 without one."""
    for key, value in scope["headers"]:
        if key == b"authorization":
            scheme, _, token = bytes(value).decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token:
                return token
            break
    raise Unauthenticated()
