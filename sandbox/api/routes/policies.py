"""Access policies: list (owners: their datasets; analysts: their organisation), revoke (owner)."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.api.deps import OwnerDep, PrincipalDep, ServicesDep
from sandbox.api.schemas import PolicyOut, Revocation, error_responses
from sandbox.control import PolicyView

router = APIRouter(prefix="/api/v1/policies", tags=["access"])


@router.get("", response_model=list[PolicyOut], responses=error_responses(401, 429))
def list_policies(principal: PrincipalDep, services: ServicesDep) -> list[PolicyView]:
    """Visible policies: analysts their organisation's, owners their datasets', operators all."""
    return services.control.list_policies(principal)


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
