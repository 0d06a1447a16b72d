"""The gateway's FastAPI application: ``create_app(settings)``.

The lifespan opens the catalog, the engine, the control plane and the query pipeline once per
process. ``app_from_environment`` is the factory ``sandbox serve`` hands to uvicorn (settings from
the environment and ``<home>/settings.env``), so several workers can each build their own app.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from sandbox import __version__
from sandbox.api.errors import install_error_handlers
from sandbox.api.limits import BodySizeLimit
from sandbox.api.maintenance import maintain
from sandbox.api.metrics import GatewayMetrics
from sandbox.api.prefix import ServicePrefix
from sandbox.api.routes import (
    access_requests,
    audit,
    budget,
    datasets,
    health,
    me,
    policies,
    preview,
    queries,
    usage,
)
from sandbox.api.services import Services
from sandbox.api.strict_json import StrictJSONBody
from sandbox.console import mount_console
from sandbox.settings import Settings, load_settings

DESCRIPTION = """\
Differentially private SQL over registered datasets: analysts get noisy aggregates, never rows.

Authenticate with `Authorization: Bearer <token>` (a token from `sandbox token create`, or the
caller's JupyterHub API token in JupyterHub mode). Every error has the body
`{"error": {"code", "message", "rule"}}`.
"""


def create_app(settings: Settings) -> FastAPI:
    """A gateway app for ``settings``; services are opened when the app starts."""
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.open(settings, metrics)
        app.state.services = services
        upkeep = asyncio.create_task(maintain(services.control, settings))
        try:
            yield
        finally:
            upkeep.cancel()
            services.close()

    app = FastAPI(
        title="sandbox gateway",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(StrictJSONBody)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    prefix = _service_prefix(settings)
    if prefix:
        app.add_middleware(ServicePrefix, prefix=prefix)
    for module in (me, datasets, preview, access_requests, policies, queries, budget, audit, usage, health):
        app.include_router(module.router)
    mount_console(app, settings)
    return app


def app_from_environment() -> FastAPI:
    """The app for ``sandbox serve`` workers: settings from the environment and the home's file."""
    return create_app(load_settings())


def _service_prefix(settings: Settings) -> str:
    """The path prefix the app also answers under (JupyterHub forwards the full service path)."""
    prefix = settings.service_prefix
    if prefix is None and settings.auth_mode == "jupyterhub":
        prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    return (prefix or "").rstrip("/")
