"""The request path's own middleware, pure ASGI (no task group per request): the request id and
access log, and the body limit."""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pysvc.errors import PayloadTooLarge
from pysvc.logs import log, request_id


class RequestIdMiddleware:
    """Every response carries `X-Request-ID` (the caller's, or a new one); every request is logged once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _header(scope, b"x-request-id")[:64] or os.urandom(16).hex()
        token = request_id.set(rid)
        began = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                fields: dict[str, Any] = {"status": status,
                                          "duration_ms": round((time.perf_counter() - began) * 1000, 2)}
                log.info("%s %s %s", scope["method"], scope["path"], status, extra={"fields": fields})
            request_id.reset(token)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class BodyLimitMiddleware:
    """413 before parsing: a declared Content-Length over the limit is refused unread, and a body
    that grows past it while streaming is cut off."""

    def __init__(self, app: ASGIApp, default: int, per_path: dict[str, int]) -> None:
        self.app = app
        self.default = default
        self.per_path = per_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope["path"], self.default)
        declared = _header(scope, b"content-length")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not refused:
                    refused = True
                    await _too_large(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


async def _too_large(send: Send, limit: int) -> None:
    error = PayloadTooLarge(f"request body over {limit} bytes")
    body = json.dumps(error.body()).encode()
    await send({"type": "http.response.start", "status": error.http_status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
