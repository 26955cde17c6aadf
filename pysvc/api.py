"""The HTTP API: the intake endpoints, the Stripe webhook and checkout landing page, health.

Clients (one PostgREST connection pool, one Stripe client) are built once at start-up and shared.
Every error is JSON `{"error", "code"}` with a real status; every response and log line carries
the request id.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

import uvicorn
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from postgrest import AsyncPostgrestClient
from starlette.exceptions import HTTPException as StarletteHTTPException

from pysvc.auth import TokenVerifier, Unauthenticated
from pysvc.checkout import Checkout, StripeNotConfigured, StripeRefused
from pysvc.errors import (
    ActiveSessionExists,
    BackendUnavailable,
    InvalidSessionRequest,
    PysvcError,
    SessionError,
)
from pysvc.factory import CHECKOUT_SESSION_ID, AsyncSessionFactory, async_client
from pysvc.intake import IntakeNotFound, Intakes, IntakeStart
from pysvc.settings import Settings, load_settings
from pysvc.store import Store, UnknownUser
from pysvc.webhook import BadWebhook, Fulfilment, verify

log = logging.getLogger("pysvc")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": request_id.get(),
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = name != "uvicorn.access"


@dataclass
class Services:
    """Everything the routes use, built once per process."""

    settings: Settings
    store: Store
    factory: AsyncSessionFactory
    checkout: Checkout
    intakes: Intakes
    fulfilment: Fulfilment
    tokens: TokenVerifier
    rest: AsyncPostgrestClient


def build_services(settings: Settings) -> Services:
    rest = async_client(settings.rest_url, settings.supabase_service_role_key.get_secret_value())
    store = Store(rest)
    factory = AsyncSessionFactory.from_client(rest)
    checkout = Checkout(settings)
    return Services(
        settings=settings,
        store=store,
        factory=factory,
        checkout=checkout,
        intakes=Intakes(factory, store, checkout),
        fulfilment=Fulfilment(factory, store, checkout),
        tokens=TokenVerifier(settings),
        rest=rest,
    )


def error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "code": code, **extra}, status_code=status)


def _to_response(exc: Exception) -> JSONResponse:
    if isinstance(exc, ActiveSessionExists):
        return error(
            409, exc.code, "You already have an active session",
            activeSessionId=exc.session_id, activeSessionType=exc.session_type,
            activeSessionStatus=exc.session_status,
        )
    if isinstance(exc, BackendUnavailable):
        log.warning("backend unavailable: %s", exc)
        return error(503, exc.code, "temporarily unavailable, try again")
    if isinstance(exc, SessionError) and exc.status < 500:
        return error(exc.status, exc.code, exc.message)
    if isinstance(exc, Unauthenticated):
        return error(401, "UNAUTHENTICATED", str(exc))
    if isinstance(exc, UnknownUser):
        return error(403, "UNKNOWN_USER", "this token's user does not exist")
    if isinstance(exc, IntakeNotFound):
        return error(404, "INTAKE_NOT_FOUND", str(exc))
    if isinstance(exc, BadWebhook):
        return error(400, exc.code, str(exc))
    if isinstance(exc, StripeNotConfigured):
        return error(503, "STRIPE_NOT_CONFIGURED", str(exc))
    if isinstance(exc, StripeRefused):
        return error(502, "STRIPE_REFUSED", str(exc))
    log.error("unhandled error", exc_info=exc)
    return error(500, "INTERNAL", "internal error")


bearer = HTTPBearer(auto_error=False)


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


async def customer_id(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> UUID:
    if credentials is None:
        raise Unauthenticated("Authorization: Bearer <Supabase access token> is required")
    return await services(request).tokens.customer_id(credentials.credentials)


Customer = Annotated[UUID, Depends(customer_id)]
Svc = Annotated[Services, Depends(services)]


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = build_services(settings)
        app.state.services = svc
        yield
        await svc.rest.aclose()

    app = FastAPI(
        title="pysvc",
        summary="Creates consultation sessions: free plans at intake, paid plans when Stripe says paid.",
        version="0.1.0",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def with_request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        token = request_id.set(rid[:64])
        began = time.perf_counter()
        try:
            try:
                response = await call_next(request)
            except Exception as exc:  # errors raised past the handlers still answer JSON
                response = _to_response(exc)
            response.headers["X-Request-ID"] = rid[:64]
            log.info(
                "%s %s %s", request.method, request.url.path, response.status_code,
                extra={"fields": {"status": response.status_code,
                                  "duration_ms": round((time.perf_counter() - began) * 1000, 2)}},
            )
            return response
        finally:
            request_id.reset(token)

    @app.exception_handler(PysvcError)
    async def on_pysvc_error(_: Request, exc: PysvcError) -> JSONResponse:
        return _to_response(exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error(422, "INVALID_REQUEST", f"{where}: {first.get('msg', 'invalid request')}".strip(": "))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, "HTTP_" + str(exc.status_code), str(exc.detail))

    @app.post("/api/intake/start", summary="Store an intake; a free plan gets its session now")
    async def start_intake(body: IntakeStart, customer: Customer, svc: Svc) -> dict[str, Any]:
        return await svc.intakes.start(customer, body)

    @app.post("/api/intake/{intake_id}/waiver", summary="Sign the waiver; a paid plan gets a Checkout URL")
    async def sign_waiver(intake_id: UUID, customer: Customer, svc: Svc) -> dict[str, Any]:
        return await svc.intakes.sign_waiver(customer, intake_id)

    @app.post("/api/stripe/webhook", summary="Stripe events: verified, recorded once, fulfilled idempotently")
    async def stripe_webhook(request: Request, svc: Svc) -> dict[str, Any]:
        secret = svc.checkout.require_webhook_secret()
        event = verify(await request.body(), request.headers.get("stripe-signature"), secret)
        try:
            return await svc.fulfilment.handle(event)
        except InvalidSessionRequest as exc:  # signed, but not an event the inbox can hold
            raise BadWebhook(str(exc), "BAD_PAYLOAD") from exc

    @app.get("/api/checkout/success", summary="Stripe's landing page: fulfils the checkout if the webhook is late")
    async def checkout_success(
        session_id: Annotated[str, Query(pattern=CHECKOUT_SESSION_ID)], customer: Customer, svc: Svc,
    ) -> JSONResponse:
        checkout = await svc.checkout.retrieve_session(session_id)
        owner = (checkout.get("metadata") or {}).get("customer_id") or checkout.get("client_reference_id")
        if owner != str(customer):
            return error(403, "NOT_YOUR_CHECKOUT", "this checkout belongs to another customer")
        outcome = await svc.fulfilment.fulfil(checkout)
        if outcome.result is not None:
            return JSONResponse({"sessionId": str(outcome.result.session_id), "redirect": outcome.result.redirect_url})
        if outcome.status == "pending":
            return JSONResponse({"status": "pending", "error": "payment not settled yet"}, status_code=202)
        if outcome.status == "refunded":
            return error(409, str(outcome.detail["reason"]), "this payment could not be used and was refunded",
                         refunded=True, **{k: v for k, v in outcome.detail.items() if k == "activeSessionId"})
        return error(422, str(outcome.detail.get("reason", "CHECKOUT_INVALID")), "this checkout cannot be fulfilled")

    @app.get("/api/sessions/active", summary="The caller's active session")
    async def active_session(customer: Customer, svc: Svc) -> JSONResponse:
        active = await svc.store.active_session(customer)
        if active is None:
            return error(404, "NO_ACTIVE_SESSION", "no active session")
        return JSONResponse({
            "sessionId": str(active.id), "type": active.type.value, "status": active.status,
            "plan": active.plan, "intakeId": str(active.intake_id),
        })

    @app.get("/healthz", summary="PostgREST and the database answer")
    async def healthz(svc: Svc) -> JSONResponse:
        try:
            await svc.store.ping()
        except BackendUnavailable as exc:
            return error(503, exc.code, str(exc))
        return JSONResponse({"status": "ok"})

    return app


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None) -> None:
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)
