"""The console as an ASGI app mounted at ``/console`` of the gateway, and the offline API docs.

The console is its own FastAPI app so that its errors are pages (a 403 page, never a stack trace or
a JSON body) and every response carries a strict Content-Security-Policy, while the gateway's API
keeps its JSON errors. It reads the gateway's services through the parent app's state, so there is
one control plane per process. ``/docs`` and ``/redoc`` load Swagger UI and ReDoc from files the
``fastapi-offline`` package ships, served by the gateway (no CDN).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandbox.console import analyst, auth, common, operator, owner, owner_amend
from sandbox.console.backend import Backend
from sandbox.console.errors import error_page, viewer_or_none
from sandbox.console.session import SessionKeys
from sandbox.console.web import Console, LoginRequired, base_url
from sandbox.console.webhooks import deliver_forever
from sandbox.errors import InternalError, NotFound, SandboxError
from sandbox.settings import Settings

logger = logging.getLogger("sandbox.console")

STATIC = Path(__file__).parent / "static"
DOCS_STATIC = Path(fastapi_offline.__file__).parent / "static"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",  # no script at all: the pages work without JavaScript
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def create_console(parent: FastAPI, settings: Settings) -> FastAPI:
    """The console app over the services of ``parent`` (opened by the parent's lifespan)."""
    console = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    console.state.console = Console(keys=SessionKeys(settings.home_dir), auth_mode=settings.auth_mode)
    console.state.backend = lambda: Backend(parent.state.services)
    for module in (auth, common, analyst, owner, owner_amend, operator):
        console.include_router(module.router)
    console.mount("/static", StaticFiles(directory=STATIC), name="static")

    @console.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        try:
            response = await call_next(request)
        except Exception as error:  # a bug: a page saying so, never a stack trace
            logger.exception("console page failed", exc_info=error)
            response = error_page(request, InternalError("the console failed to show this page; see the log"))
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @console.exception_handler(LoginRequired)
    async def login_required(request: Request, _error: Exception) -> Response:
        return RedirectResponse(f"{base_url(request)}/login", status_code=303)

    @console.exception_handler(SandboxError)
    async def sandbox_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, SandboxError)
        viewer = None if error.http_status in (401, 429) else await run_in_threadpool(viewer_or_none, request)
        return error_page(request, error, viewer)

    @console.exception_handler(RequestValidationError)
    async def invalid(request: Request, _error: Exception) -> Response:
        return error_page(request, NotFound("there is no such page", code="route.not_found"))

    @console.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        return error_page(request, NotFound("there is no such page", code="route.not_found"))

    return console


def mount_console(app: FastAPI, settings: Settings) -> None:
    """Mount the console at ``/console``, serve ``/docs`` and ``/redoc`` without a CDN and, when
    configured, deliver notification webhooks while the app runs."""
    app.mount("/console", create_console(app, settings), name="console")
    if settings.notification_webhooks:
        _deliver_webhooks(app, settings)
    app.mount("/docs-static", StaticFiles(directory=DOCS_STATIC), name="docs-static")

    def prefix(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}/docs-static/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs-static/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs-static/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = prefix(request)
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}/docs-static/redoc.standalone.js",
            redoc_favicon_url=f"{root}/docs-static/favicon.png",
            with_google_fonts=False,
        )


def _deliver_webhooks(app: FastAPI, settings: Settings) -> None:
    """Run ``deliver_forever`` inside the app's lifespan (after the services are open)."""
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(parent: FastAPI) -> AsyncIterator[Any]:
        async with inner(parent) as state:
            task = asyncio.create_task(deliver_forever(Backend(parent.state.services), settings))
            try:
                yield state
            finally:
                task.cancel()

    app.router.lifespan_context = lifespan
