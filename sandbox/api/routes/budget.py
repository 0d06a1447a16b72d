"""``GET /api/v1/budget``: remaining privacy budget per policy."""

from __future__ import annotations

from fastapi import APIRouter

from sandbox.api.deps import AnalystOrOwnerDep, ServicesDep
from sandbox.api.schemas import BudgetOut, error_responses
from sandbox.control import BudgetView

router = APIRouter(prefix="/api/v1", tags=["queries"])


@router.get("/budget", response_model=list[BudgetOut], responses=error_responses(401, 403, 429))
def budget(principal: AnalystOrOwnerDep, services: ServicesDep) -> list[BudgetView]:
    """Granted, spent, reserved and remaining budget of every policy visible to the caller."""
    return services.control.budget(principal)
