"""``GET /api/v1/budget``: remaining privacy budget per policy; ``PUT /api/v1/datasets/{name}/caps``:
the owner's lifetime caps."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.api.deps import MemberDep, OwnerDep, ServicesDep
from sandbox.api.schemas import BudgetOut, CapSetting, error_responses
from sandbox.control import BudgetView

router = APIRouter(prefix="/api/v1", tags=["queries"])


@router.get("/budget", response_model=list[BudgetOut], responses=error_responses(401, 403, 429))
def budget(principal: MemberDep, services: ServicesDep) -> list[BudgetView]:
    """Granted, spent, reserved and remaining budget of every policy visible to the caller, with the
    organisation's lifetime loss on the dataset: analysts their organisation's, owners their
    datasets', operators every organisation's."""
    return services.control.budget(principal)


@router.put(
    "/datasets/{name}/caps",
    status_code=204,
    tags=["access"],
    responses=error_responses(401, 403, 404, 413, 422, 429),
)
def set_cap(name: str, body: CapSetting, principal: OwnerDep, services: ServicesDep) -> None:
    """The owner sets a lifetime cap (null removes it): dataset-wide over all organisations
    (``scope: dataset``), the default of each organisation (``per_organisation``), or one
    organisation's (``organisation``, naming it)."""
    record = services.visible_dataset(principal, name)
    services.control.set_dataset_cap(
        principal,
        record,
        body.epsilon,
        body.delta,
        organisation=body.organisation if body.scope == "organisation" else None,
        per_organisation=body.scope == "per_organisation",
    )
