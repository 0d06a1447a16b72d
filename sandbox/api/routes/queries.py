"""Queries: answer (spends budget), estimate (spends nothing), history.

The endpoints run in FastAPI's thread pool, so DuckDB, OpenDP and the state store never block the
event loop. Running and estimating queries (the hot paths) are coroutines making exactly one
thread-pool call that authenticates and does the work; their responses are then validated once,
on the event loop.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from sandbox.api.deps import PrincipalDep, ServicesDep, TokenDep, authenticate
from sandbox.api.pages import CURSOR, NEXT_CURSOR_HEADER, PAGED
from sandbox.api.schemas import QueryAnswer, QueryEstimate, QueryOut, QueryRequest, error_responses
from sandbox.api.services import Services
from sandbox.control import QueryView
from sandbox.errors import SandboxError
from sandbox.principals import Role

router = APIRouter(prefix="/api/v1/queries", tags=["queries"])

QUERY_ERRORS = error_responses(400, 401, 403, 404, 413, 422, 429, 503)


@router.post("", response_model=QueryAnswer, responses=QUERY_ERRORS)
async def run_query(body: QueryRequest, token: TokenDep, services: ServicesDep) -> dict[str, Any]:
    """Run a DP query: a noisy answer, its cost, accuracy and the budget left.

    An identical earlier release is replayed from the cache at no cost (``cached: true``).
    """
    return await run_in_threadpool(_run_query, services, token, body)


@router.post("/estimate", response_model=QueryEstimate, responses=QUERY_ERRORS)
async def estimate_query(body: QueryRequest, token: TokenDep, services: ServicesDep) -> dict[str, Any]:
    """Cost, expected accuracy and the budget after the query; reads no data, spends nothing."""
    return await run_in_threadpool(_estimate_query, services, token, body)


def _run_query(services: Services, token: str, body: QueryRequest) -> dict[str, Any]:
    principal = authenticate(services, token, Role.ANALYST)
    started = time.perf_counter()
    try:
        answer = services.pipeline.answer(
            principal,
            body.dataset,
            body.sql,
            body.epsilon,
            body.delta,
            ci=body.ci,
            group_size=body.group_size,
            max_joined_rows_per_unit=body.max_joined_rows_per_unit,
        )
    except SandboxError as error:
        services.metrics.refused(error, "query", time.perf_counter() - started)
        raise
    services.metrics.answered(answer, body.dataset, time.perf_counter() - started)
    return answer


def _estimate_query(services: Services, token: str, body: QueryRequest) -> dict[str, Any]:
    principal = authenticate(services, token, Role.ANALYST)
    started = time.perf_counter()
    try:
        estimate = services.pipeline.estimate(
            principal,
            body.dataset,
            body.sql,
            body.epsilon,
            body.delta,
            ci=body.ci,
            group_size=body.group_size,
            max_joined_rows_per_unit=body.max_joined_rows_per_unit,
        )
    except SandboxError as error:
        services.metrics.refused(error, "estimate", time.perf_counter() - started)
        raise
    services.metrics.estimated(time.perf_counter() - started)
    return estimate


@router.get("", response_model=list[QueryOut], responses={**error_responses(401, 422, 429), **PAGED})
def list_queries(
    *,
    principal: PrincipalDep,
    services: ServicesDep,
    response: Response,
    dataset: Annotated[str | None, Query(max_length=128, description="Only this dataset.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Newest first, at most this many.")] = 100,
    cursor: CURSOR = None,
) -> list[QueryView]:
    """Query history: analysts their organisation's, owners their datasets', operators all.

    One page; the next page's cursor is in the ``X-Next-Cursor`` header (absent on the last)."""
    page = services.control.query_page(principal, dataset=dataset, limit=limit, cursor=cursor)
    if page.next_cursor:
        response.headers[NEXT_CURSOR_HEADER] = page.next_cursor
    return page.items


@router.get("/{query_id}", response_model=QueryOut, responses=error_responses(401, 404, 429))
def get_query(query_id: str, principal: PrincipalDep, services: ServicesDep) -> QueryView:
    """One recorded query (never its values)."""
    return services.control.get_query(principal, query_id)
