"""``GET /api/v1/usage``: the metering report (operators: all; owners: their datasets)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from sandbox.api.deps import OwnerOrOperatorDep, ServicesDep
from sandbox.api.schemas import UsageReportOut, error_responses
from sandbox.api.timeutil import utc
from sandbox.control import UsageReport

router = APIRouter(prefix="/api/v1", tags=["audit"])


@router.get("/usage", response_model=UsageReportOut, responses=error_responses(401, 403, 422, 429))
def usage(
    *,
    principal: OwnerOrOperatorDep,
    services: ServicesDep,
    since: Annotated[datetime | None, Query(description="Period start (UTC if naive).")] = None,
    until: Annotated[datetime | None, Query(description="Period end, exclusive (UTC if naive).")] = None,
    org: Annotated[str | None, Query(max_length=128, description="Only this organisation.")] = None,
    dataset: Annotated[str | None, Query(max_length=128, description="Only this dataset.")] = None,
) -> UsageReport:
    """Queries answered, refused, replayed and failed, and budget spent, per organisation and dataset."""
    return services.control.usage(
        principal, since=utc(since), until=utc(until), organisation=org, dataset=dataset
    )
