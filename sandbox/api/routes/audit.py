"""The audit chain for operators: filter, verify, export."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from sandbox.api.deps import OperatorDep, ServicesDep
from sandbox.api.schemas import AuditEventOut, VerifyReportOut, error_responses
from sandbox.api.timeutil import utc
from sandbox.control import AuditEventView, VerifyReport

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

Actor = Annotated[str | None, Query(max_length=128, description="Only events by this user.")]
Organisation = Annotated[str | None, Query(max_length=128, description="Only this organisation's events.")]
Dataset = Annotated[str | None, Query(max_length=128, description="Only events about this dataset.")]
EventTypeFilter = Annotated[
    str | None, Query(max_length=64, description="Only this event type, e.g. query.answered.")
]
Since = Annotated[datetime | None, Query(description="Events at or after this time (UTC if naive).")]
Until = Annotated[datetime | None, Query(description="Events before this time (UTC if naive).")]

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


@router.get("", response_model=list[AuditEventOut], responses=error_responses(401, 403, 422, 429))
def list_events(
    *,
    operator: OperatorDep,
    services: ServicesDep,
    actor: Actor = None,
    org: Organisation = None,
    dataset: Dataset = None,
    type: EventTypeFilter = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[AuditEventView]:
    """Audit events in chain order, filtered by actor, organisation, dataset, type and time."""
    return services.control.audit_events(
        operator,
        actor=actor,
        organisation=org,
        dataset=dataset,
        type=type,
        since=utc(since),
        until=utc(until),
        limit=limit,
    )


@router.get("/verify", response_model=VerifyReportOut, responses=error_responses(401, 403, 429))
def verify(_operator: OperatorDep, services: ServicesDep) -> VerifyReport:
    """Walk the chain and check every checkpoint; reports the first broken or missing link."""
    return services.control.verify_audit()


@router.get(
    "/export",
    response_class=Response,
    responses={
        200: {"content": {"application/x-ndjson": {}, "text/csv": {}}, "description": "The events."},
        **error_responses(401, 403, 422, 429),
    },
)
def export(
    *,
    operator: OperatorDep,
    services: ServicesDep,
    format: Annotated[Literal["jsonl", "csv"], Query(description="JSON Lines or CSV.")] = "jsonl",
    actor: Actor = None,
    org: Organisation = None,
    dataset: Dataset = None,
    type: EventTypeFilter = None,
    since: Since = None,
    until: Until = None,
) -> Response:
    """Filtered audit events as a JSON Lines or CSV download."""
    filters: dict[str, Any] = {
        "actor": actor,
        "organisation": org,
        "dataset": dataset,
        "type": type,
        "since": utc(since),
        "until": utc(until),
    }
    text = services.control.export_audit(operator, format, **filters)
    return Response(
        text,
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="audit.{format}"'},
    )
