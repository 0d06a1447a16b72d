"""``GET /healthz`` (public liveness) and ``GET /metrics`` (Prometheus: operators, or a scrape-only
user holding just the ``metrics`` role, so Prometheus need not hold an operator token)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from sandbox.api.deps import ScraperDep, ServicesDep
from sandbox.api.metrics import budget_exposition
from sandbox.api.schemas import Health, error_responses
from sandbox.api.services import Services
from sandbox.principals import Principal, Role

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health()


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."},
        **error_responses(401, 403, 429),
    },
)
async def metrics(scraper: ScraperDep, services: ServicesDep) -> Response:
    """Queries by outcome, refusals by rule, latency histogram and epsilon spent; remaining budget
    per active policy and lifetime loss per organisation (read from the state store)."""
    budgets = await run_in_threadpool(_budget_gauges, services, scraper)
    return Response(services.metrics.exposition() + budgets, media_type=CONTENT_TYPE_LATEST)


def _budget_gauges(services: Services, scraper: Principal) -> bytes:
    # the scraper reads every organisation's budget figures, as an operator would, and nothing else
    reader = Principal(scraper.name, frozenset({Role.OPERATOR}))
    return budget_exposition(services.control.budget(reader), services.control.refusals.counts)
