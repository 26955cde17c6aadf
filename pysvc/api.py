"""The HTTP API: the app, its one error handler, and `serve`.

Services (one PostgREST connection pool, one Stripe client) are built once at start-up. Every error
is JSON `{"error", "code", ...}` with the status its class carries; every response has a request id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import fastapi_offline
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from pysvc import __version__, background, fastpath
from pysvc.deps import Services
from pysvc.errors import ApiError
from pysvc.logs import configure_logging
from pysvc.middleware import BodyLimitMiddleware, RequestIdMiddleware
from pysvc.responses import internal_error, invalid_request, render, unreadable_body
from pysvc.routers import app_pages, customer, health, mechanic, ops, stripe
from pysvc.settings import Settings, load_settings

log = logging.getLogger("pysvc")
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"  # Swagger UI and ReDoc: no CDN needed


async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return render(exc)


async def on_invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return invalid_request(exc.errors())


async def on_http(_: Request, exc: Exception) -> JSONResponse:
    """Starlette's own answers (404 no route, 405 wrong method …) in the same shape, headers kept."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:  # FastAPI could not read the body at all
        return unreadable_body(str(exc.detail))
    return JSONResponse({"error": str(exc.detail), "code": f"HTTP_{exc.status_code}"},
                        status_code=exc.status_code, headers=exc.headers)


async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc)
    return internal_error()


class Api(FastAPI):
    """The app, with its hot route (`pysvc.fastpath`) handed straight to a short chain of its own: the same
    request-id and body-limit middleware, then the route's handler (docs/benchmarks.md)."""

    fast: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast is not None and fastpath.matches(scope):
            await self.fast(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> Api:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = app.state.services = Services.build(settings)
        worker = None
        if settings.background_interval_seconds > 0:
            svc.background = background.Supervisor(svc)
            worker = asyncio.create_task(svc.background.run_forever())
        yield
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        await svc.aclose()

    app = Api(
        title="pysvc",
        summary="Consultation sessions: free plans at intake, paid plans when Stripe says paid.",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    per_path = {"/api/stripe/webhook": settings.max_webhook_body_bytes}
    app.add_middleware(BodyLimitMiddleware, default=settings.max_body_bytes, per_path=per_path)
    app.add_middleware(RequestIdMiddleware)
    app.fast = RequestIdMiddleware(BodyLimitMiddleware(fastpath.IntakeFastPath(app), settings.max_body_bytes, per_path))
    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)
    for router in (customer.router, mechanic.router, stripe.router, health.router, app_pages.router, ops.router):
        app.include_router(router)
    _mount_docs(app)
    return app


def _mount_docs(app: FastAPI) -> None:
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="pysvc API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js", swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json", title="pysvc API", redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False,
        )


def serve(host: str = "127.0.0.1", port: int = 8000, settings: Settings | None = None, workers: int = 1) -> None:
    """Serve the API. With `workers` > 1, that many processes share the port (each with its own
    clients), for machines with idle cores: more throughput, the same CPU per request."""
    settings = settings or load_settings()
    configure_logging(settings.log_level)
    if workers > 1:
        uvicorn.run("pysvc.api:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_config=None, access_log=False)
        return
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)


def app_from_env() -> FastAPI:
    """The app of one worker process, its settings read from the environment and .env."""
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
