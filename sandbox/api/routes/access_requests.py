"""The access lifecycle: analysts request and withdraw, the dataset's owner approves or rejects."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from sandbox.api.deps import AnalystDep, OwnerDep, PrincipalDep, ServicesDep
from sandbox.api.pages import CURSOR, NEXT_CURSOR_HEADER, PAGED
from sandbox.api.schemas import (
    AccessRequestCreate,
    AccessRequestOut,
    Approval,
    PolicyOut,
    Rejection,
    error_responses,
)
from sandbox.api.timeutil import utc
from sandbox.control import AccessRequestView, PolicyView
from sandbox.policies.models import RequestStatus

router = APIRouter(prefix="/api/v1/access-requests", tags=["access"])


@router.post(
    "",
    response_model=AccessRequestOut,
    status_code=201,
    responses=error_responses(401, 403, 404, 409, 413, 422, 429),
)
def create_request(
    body: AccessRequestCreate, principal: AnalystDep, services: ServicesDep
) -> AccessRequestView:
    """Ask the dataset's owner for access for your organisation; the request starts ``pending``."""
    record = services.visible_dataset(principal, body.dataset)
    valid_until = utc(body.valid_until)
    assert valid_until is not None
    return services.control.request_access(
        principal,
        record,
        purpose=body.purpose,
        columns=body.columns,
        epsilon=body.epsilon,
        delta=body.delta,
        valid_until=valid_until,
        valid_from=utc(body.valid_from),
    )


@router.get("", response_model=list[AccessRequestOut], responses={**error_responses(401, 422, 429), **PAGED})
def list_requests(
    *,
    principal: PrincipalDep,
    services: ServicesDep,
    response: Response,
    status: Annotated[RequestStatus | None, Query(description="Only requests in this state.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Newest first, at most this many.")] = 100,
    cursor: CURSOR = None,
) -> list[AccessRequestView]:
    """Analysts: their organisation's requests; owners: requests on their datasets; operators: all.

    One page; the next page's cursor is in the ``X-Next-Cursor`` header (absent on the last)."""
    page = services.control.request_page(
        principal, status=status.value if status else None, limit=limit, cursor=cursor
    )
    if page.next_cursor:
        response.headers[NEXT_CURSOR_HEADER] = page.next_cursor
    return page.items


@router.get("/{request_id}", response_model=AccessRequestOut, responses=error_responses(401, 404, 429))
def get_request(request_id: str, principal: PrincipalDep, services: ServicesDep) -> AccessRequestView:
    """One access request visible to the caller."""
    return services.control.get_request(principal, request_id)


@router.post(
    "/{request_id}/approve",
    response_model=PolicyOut,
    responses=error_responses(401, 403, 404, 409, 413, 422, 429),
)
def approve_request(
    request_id: str, body: Approval, principal: OwnerDep, services: ServicesDep
) -> PolicyView:
    """The dataset's owner approves, possibly narrowing columns, budget and validity; a policy results."""
    request = services.control.get_request(principal, request_id)
    record = services.catalog.get(request.dataset)
    return services.control.approve(
        principal,
        request_id,
        record,
        columns=body.columns,
        epsilon=body.epsilon,
        delta=body.delta,
        valid_until=utc(body.valid_until),
        max_epsilon_per_query=body.max_epsilon_per_query,
        max_delta_per_query=body.max_delta_per_query,
        min_group_size=body.min_group_size,
        aggregates=body.aggregates,
    )


@router.post(
    "/{request_id}/reject",
    response_model=AccessRequestOut,
    responses=error_responses(401, 403, 404, 409, 413, 422, 429),
)
def reject_request(
    request_id: str, body: Rejection, principal: OwnerDep, services: ServicesDep
) -> AccessRequestView:
    """The dataset's owner rejects, with the reason the analyst will read."""
    request = services.control.get_request(principal, request_id)
    record = services.catalog.get(request.dataset)
    return services.control.reject(principal, request_id, record, reason=body.reason)


@router.post(
    "/{request_id}/withdraw",
    response_model=AccessRequestOut,
    responses=error_responses(401, 403, 404, 409, 429),
)
def withdraw_request(request_id: str, principal: AnalystDep, services: ServicesDep) -> AccessRequestView:
    """An analyst withdraws their organisation's pending request (``access.withdrawn``)."""
    return services.control.withdraw_request(principal, request_id)
