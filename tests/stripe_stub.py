"""A local stand-in for Stripe's HTTP API (only that: webhooks are signed for real by the tests).

It answers Checkout Session create/retrieve/list/expire and Refund create with Stripe's own object shapes
(tests/fixtures/stripe), honours Idempotency-Key as Stripe does, and records every request.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import stripe

FIXTURES = Path(__file__).parent / "fixtures" / "stripe"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


@dataclass
class Call:
    method: str
    path: str
    params: dict[str, str]
    idempotency_key: str | None


@dataclass
class StripeStub:
    calls: list[Call] = field(default_factory=list)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    replies: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    failures: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # by path, until removed
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def calls_to(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]

    def checkout_session(self, **fields: Any) -> dict[str, Any]:
        """A checkout.session object as Stripe would return or send it."""
        session = fixture("checkout_session")
        session.update({
            "id": f"cs_test_{uuid.uuid4().hex}",
            "payment_intent": f"pi_{uuid.uuid4().hex[:24]}",
            "status": "open",
            "payment_status": "unpaid",
        })
        session.update(fields)
        session["url"] = f"https://checkout.stripe.com/c/pay/{session['id']}"
        return session

    def handle(self, method: str, path: str, params: dict[str, str], key: str | None) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls.append(Call(method, path, params, key))
            if path in self.failures:
                return self.failures[path]
            if key and key in self.replies:
                return self.replies[key]
            reply = self._answer(method, path, params)
            if key:
                self.replies[key] = reply
            return reply

    def _list(self, params: dict[str, str]) -> dict[str, Any]:
        """A list page, newest first, as Stripe pages it (limit, starting_after, has_more)."""
        found = sorted(
            (s for s in self.sessions.values()
             if s.get("created", 0) >= int(params.get("created[gte]", 0))
             and s["status"] == params.get("status", s["status"])),
            key=lambda s: (-s.get("created", 0), s["id"]),
        )
        if "starting_after" in params:
            ids = [s["id"] for s in found]
            found = found[ids.index(params["starting_after"]) + 1:] if params["starting_after"] in ids else []
        limit = int(params.get("limit", 10))
        return {"object": "list", "url": "/v1/checkout/sessions", "has_more": len(found) > limit,
                "data": found[:limit]}

    def _answer(self, method: str, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if method == "POST" and path == "/v1/checkout/sessions":
            metadata = {k[9:-1]: v for k, v in params.items() if k.startswith("metadata[")}
            session = self.checkout_session(
                metadata=metadata,
                client_reference_id=params.get("client_reference_id"),
                amount_total=int(params["line_items[0][price_data][unit_amount]"]),
                amount_subtotal=int(params["line_items[0][price_data][unit_amount]"]),
                currency=params["line_items[0][price_data][currency]"],
                mode=params["mode"],
                success_url=params.get("success_url"),
                cancel_url=params.get("cancel_url"),
                expires_at=int(params.get("expires_at") or time.time() + 86400),
                created=int(time.time()),
            )
            self.sessions[session["id"]] = session
            return 200, session
        if method == "GET" and path == "/v1/checkout/sessions":
            return 200, self._list(params)
        if method == "POST" and path.startswith("/v1/checkout/sessions/") and path.endswith("/expire"):
            found = self.sessions.get(path.split("/")[4])
            if found is None:
                return 404, {"error": {"code": "resource_missing", "param": "session", "type": "invalid_request_error",
                                       "message": "No such checkout.session"}}
            if found["status"] != "open":
                return 400, {"error": {"type": "invalid_request_error", "message": (
                    f"Only Checkout Sessions with a status in [\"open\"] can be expired ({found['status']}).")}}
            found["status"] = "expired"
            return 200, found
        if method == "GET" and path.startswith("/v1/checkout/sessions/"):
            checkout_id = path.rsplit("/", 1)[1]
            found = self.sessions.get(checkout_id)
            if found is None:
                return 404, {"error": {
                    "code": "resource_missing", "doc_url": "https://stripe.com/docs/error-codes/resource-missing",
                    "message": f"No such checkout.session: '{checkout_id}'", "param": "id",
                    "type": "invalid_request_error"}}
            return 200, found
        if method == "POST" and path == "/v1/refunds":
            refund = fixture("refund")
            refund.update({
                "id": f"re_{uuid.uuid4().hex[:24]}",
                "payment_intent": params.get("payment_intent"),
                "metadata": {k[9:-1]: v for k, v in params.items() if k.startswith("metadata[")},
                "created": int(time.time()),
            })
            return 200, refund
        return 404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL ({path})"}}


def serve(stub: StripeStub) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _reply(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            path, _, query = self.path.partition("?")
            params = dict(parse_qsl(body or query, keep_blank_values=True))
            status, payload = stub.handle(method, path, params, self.headers.get("Idempotency-Key"))
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_{uuid.uuid4().hex[:14]}")
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._reply("GET")

        def do_POST(self) -> None:
            self._reply("POST")

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def event(event_type: str, obj: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A Stripe event around `obj`, from Stripe's own event fixture."""
    evt = fixture("event")
    evt.update({
        "id": f"evt_test_{uuid.uuid4().hex}",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": copy.deepcopy(obj)},
        "api_version": stripe.api_version,  # the endpoint is set to the version pysvc pins
    })
    evt.update(fields)
    return evt


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header, computed exactly as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"
