"""Access policies: list (owners: their datasets; analysts: their organisation), amend and revoke
(owner)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from sandbox.api.deps import OwnerDep, PrincipalDep, ServicesDep
from sandbox.api.pages import CURSOR, NEXT_CURSOR_HEADER, PAGED
from sandbox.api.schemas import Amendment, PolicyOut, Revocation, error_responses
from sandbox.api.timeutil import utc
from sandbox.control import PolicyView

router = APIRouter(prefix="/api/v1/policies", tags=["access"])


@router.get("", response_model=list[PolicyOut], responses={**error_responses(401, 422, 429), **PAGED})
def list_policies(
    *,
    principal: PrincipalDep,
    services: ServicesDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=1000, description="Newest first, at most this many.")] = 100,
    cursor: CURSOR = None,
) -> list[PolicyView]:
    """Visible policies: analysts their organisation's, owners their datasets', operators all.

    One page; the next page's cursor is in the ``X-Next-Cursor`` header (absent on the last)."""
    page = services.control.policy_page(principal, limit=limit, cursor=cursor)
    if page.next_cursor:
        response.headers[NEXT_CURSOR_HEADER] = page.next_cursor
    return page.items


@router.get("/{policy_id}", response_model=PolicyOut, responses=error_responses(401, 404, 429))
def get_policy(policy_id: str, principal: PrincipalDep, services: ServicesDep) -> PolicyView:
    """One policy visible to the caller."""
    return services.control.get_policy(principal, policy_id)


@router.post(
    "/{policy_id}/revoke",
    response_model=PolicyOut,
    responses=error_responses(401, 403, 404, 409, 413, 422, 429),
)
def revoke_policy(policy_id: str, body: Revocation, principal: OwnerDep, services: ServicesDep) -> PolicyView:
    """The dataset's owner revokes a policy; the next query under it is refused."""
    policy = services.control.get_policy(principal, policy_id)
    record = services.catalog.get(policy.dataset)
    return services.control.revoke_policy(principal, policy_id, record, reason=body.reason)


@router.post(
    "/{policy_id}/amend",
    response_model=PolicyOut,
    responses=error_responses(401, 403, 404, 409, 413, 422, 429),
)
def amend_policy(policy_id: str, body: Amendment, principal: OwnerDep, services: ServicesDep) -> PolicyView:
    """The dataset's owner amends an active policy: top up epsilon/delta, change validity, narrow
    columns or aggregates; recorded with old and new values (``policy.amended``)."""
    policy = services.control.get_policy(principal, policy_id)
    record = services.catalog.get(policy.dataset)
    return services.control.amend_policy(
        principal,
        policy_id,
        record,
        epsilon=body.epsilon,
        delta=body.delta,
        valid_until=utc(body.valid_until),
        columns=body.columns,
        aggregates=body.aggregates,
        max_epsilon_per_query=body.max_epsilon_per_query,
        max_delta_per_query=body.max_delta_per_query,
        reason=body.reason,
    )
