"""The audit chain for operators: filter, verify, export."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from sandbox.api.deps import OperatorDep, ServicesDep
from sandbox.api.pages import CURSOR, NEXT_CURSOR_HEADER, PAGED
from sandbox.api.schemas import AuditEventOut, VerifyReportOut, error_responses
from sandbox.api.timeutil import utc
from sandbox.control import AuditEventView, VerifyReport
from sandbox.control.base import encode_cursor

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


def _filters(  # noqa: PLR0917 - the query's filters in their documented order
    actor: str | None,
    organisation: str | None,
    dataset: str | None,
    type: str | None,
    since: datetime | None,
    until: datetime | None,
) -> dict[str, Any]:
    return {
        "actor": actor,
        "organisation": organisation,
        "dataset": dataset,
        "type": type,
        "since": utc(since),
        "until": utc(until),
    }


@router.get(
    "", response_model=list[AuditEventOut], responses={**error_responses(401, 403, 422, 429), **PAGED}
)
def list_events(
    *,
    operator: OperatorDep,
    services: ServicesDep,
    response: Response,
    actor: Actor = None,
    org: Organisation = None,
    dataset: Dataset = None,
    type: EventTypeFilter = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    after: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="Page forward from this seq (0: the start).")
    ] = None,
    cursor: CURSOR = None,
) -> list[AuditEventView]:
    """Audit events in chain order, filtered by actor, organisation, dataset, type and time.

    Without ``after`` or ``cursor``: the newest ``limit`` events. With either: the next ``limit``
    events in chain order, and the following page's cursor in ``X-Next-Cursor``."""
    filters = _filters(actor, org, dataset, type, since, until)
    if after is None and cursor is None:
        return services.control.audit_events(operator, limit=limit, **filters)
    page = services.control.audit_page(
        operator, limit=limit, cursor=cursor or encode_cursor(after or 0), **filters
    )
    if page.next_cursor:
        response.headers[NEXT_CURSOR_HEADER] = page.next_cursor
    return page.items


@router.get("/verify", response_model=VerifyReportOut, responses=error_responses(401, 403, 429))
def verify(_operator: OperatorDep, services: ServicesDep) -> VerifyReport:
    """Walk the chain, check every checkpoint and replay the chain to prove the stored state;
    reports the first broken or missing link and every stored value the chain does not prove."""
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
    filters = _filters(actor, org, dataset, type, since, until)
    text = services.control.export_audit(operator, format, **filters)
    return Response(
        text,
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="audit.{format}"'},
    )
