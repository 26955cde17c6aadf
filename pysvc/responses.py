"""The one JSON error shape, as responses: what the app's exception handlers and the fast path send."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse

from pysvc.errors import ApiError
from pysvc.logs import request_id
from pysvc.schemas import INVALID_INTAKE

log = logging.getLogger("pysvc")


def render(error: ApiError) -> JSONResponse:
    """The error's body; a 5xx says only what kind of failure it was and the request id to quote (what
    went wrong inside, e.g. PostgREST's answer, goes to the log line with the same request id)."""
    if error.http_status < 500:
        return JSONResponse(error.body(), status_code=error.http_status, headers=error.headers or None)
    log.warning("%s: %s", error.code, error.detail,
                extra={"fields": {"http_status": error.http_status, "details": error.extra}})
    body = {"error": type(error).message, "code": error.body()["code"], "requestId": request_id.get()}
    return JSONResponse(body, status_code=error.http_status, headers=error.headers or None)


def invalid_request(errors: Sequence[Any]) -> JSONResponse:
    """422 naming the first problem (`field: message`) of a pydantic validation: INVALID_INTAKE when an
    intake field holds what PostgreSQL cannot store, INVALID_REQUEST otherwise."""
    first = next((e for e in errors if e.get("type") == INVALID_INTAKE), errors[0] if errors else {})
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = f"{where}: {first.get('msg', 'invalid request')}".strip(": ")
    code = INVALID_INTAKE if first.get("type") == INVALID_INTAKE else "INVALID_REQUEST"
    return JSONResponse({"error": message, "code": code}, status_code=422)


def internal_error() -> JSONResponse:
    """500 for an exception nothing handled (logged by the caller with its traceback)."""
    return JSONResponse({"error": "internal error", "code": "INTERNAL", "requestId": request_id.get()},
                        status_code=500)


def unreadable_body(detail: str = "There was an error parsing the body") -> JSONResponse:
    """422 for a body that cannot be read at all (not UTF-8, say): FastAPI's 400, in the one shape."""
    return JSONResponse({"error": detail, "code": "INVALID_REQUEST"}, status_code=422)
