"""The one JSON error shape, as responses: what the app's exception handlers and the fast path send."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse

from pysvc.errors import ApiError

log = logging.getLogger("pysvc")


def render(error: ApiError) -> JSONResponse:
    if error.http_status >= 500:
        log.warning("%s: %s", error.code, error.detail)
    return JSONResponse(error.body(), status_code=error.http_status, headers=error.headers or None)


def invalid_request(errors: Sequence[Any]) -> JSONResponse:
    """422 INVALID_REQUEST naming the first problem (`field: message`) of a pydantic validation."""
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = f"{where}: {first.get('msg', 'invalid request')}".strip(": ")
    return JSONResponse({"error": message, "code": "INVALID_REQUEST"}, status_code=422)
