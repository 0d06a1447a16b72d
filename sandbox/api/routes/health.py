"""``GET /healthz`` (public liveness) and ``GET /metrics`` (Prometheus, operators only)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from sandbox.api.deps import OperatorDep, ServicesDep
from sandbox.api.schemas import Health, error_responses

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
async def metrics(_operator: OperatorDep, services: ServicesDep) -> Response:
    """Queries by outcome, refusals by rule, latency histogram and epsilon spent."""
    return Response(services.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
