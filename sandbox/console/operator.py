"""Operator pages: service health and metrics, the audit log (filter, page, detail, verify, export),
every organisation's budget, users and tokens, usage charts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from sandbox import __version__
from sandbox.api.timeutil import utc
from sandbox.audit.models import EventType
from sandbox.console import charts
from sandbox.console.backend import AUDIT_PAGE
from sandbox.console.owner import usage_charts
from sandbox.console.web import FormDep, OperatorDep, backend, base_url, render

router = APIRouter(prefix="/operator")

MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}


@router.get("")
def home(request: Request, viewer: OperatorDep) -> Response:
    """Service health: version, auth mode, chain head, counts and the main metrics."""
    b = backend(request)
    latest = b.audit_events(viewer.principal, {}, after=None, limit=1)
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(b.metrics_text(viewer.principal)):
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = ",".join(f"{v}" for v in sample.labels.values())
                samples[f"{family.name}{{{labels}}}"] = sample.value
    return render(
        request,
        "operator/home.html",
        viewer,
        version=__version__,
        auth_mode=b.services.settings.auth_mode,
        head=latest[0] if latest else None,
        datasets=len(b.datasets(viewer.principal)),
        users=len(b.control.list_users()),
        active=sum(1 for p in b.policies(viewer.principal) if p.status == "active"),
        samples=sorted(samples.items()),
        refusals=charts.bars([(rule, float(n)) for rule, n in b.refusals_by_rule(viewer.principal)[:12]]),
    )


class AuditQuery(BaseModel):
    """The audit page's filters (the same as ``GET /api/v1/audit``'s); dates are ISO dates or times."""

    actor: str = Field("", max_length=128)
    org: str = Field("", max_length=128)
    dataset: str = Field("", max_length=128)
    type: str = Field("", max_length=64)
    since: str = Field("", max_length=32)
    until: str = Field("", max_length=32)

    def filters(self) -> dict[str, Any]:
        """Keyword arguments of the control plane's audit calls."""
        return {
            "actor": self.actor or None,
            "organisation": self.org or None,
            "dataset": self.dataset or None,
            "type": self.type or None,
            "since": _moment(self.since),
            "until": _moment(self.until, end_of_day=True),
        }


def _moment(text: str, *, end_of_day: bool = False) -> datetime | None:
    """An ISO date or time (UTC if naive); a bare date as an end means the end of that day."""
    try:
        moment = utc(datetime.fromisoformat(text)) if text else None
    except ValueError:
        return None
    if moment is not None and end_of_day and len(text) == len("2026-01-01"):
        moment += timedelta(days=1)
    return moment


AuditQueryDep = Annotated[AuditQuery, Query()]


@router.get("/audit")
def audit(
    request: Request,
    viewer: OperatorDep,
    query: AuditQueryDep,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    """The audit log: newest page by default, or pages forward in chain order from ``after``."""
    events = backend(request).audit_events(viewer.principal, query.filters(), after=after, limit=AUDIT_PAGE)
    return render(
        request,
        "operator/audit.html",
        viewer,
        events=events,
        query=query.model_dump(),
        after=after,
        more=len(events) == AUDIT_PAGE,
        types=[t.value for t in EventType],
    )


@router.get("/audit/export")
def export(
    request: Request,
    viewer: OperatorDep,
    query: AuditQueryDep,
    format: Literal["jsonl", "csv"] = "csv",
) -> Response:
    """The filtered events as a JSON Lines or CSV download, exactly as hashed."""
    text = backend(request).export_audit(viewer.principal, format, query.filters())
    return Response(
        text,
        media_type=MEDIA_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="audit.{format}"'},
    )


@router.get("/audit/{seq}")
def event(request: Request, viewer: OperatorDep, seq: int) -> Response:
    """One event with its payload and hashes."""
    return render(
        request, "operator/event.html", viewer, event=backend(request).audit_event(viewer.principal, seq)
    )


@router.post("/audit/verify")
def verify(request: Request, viewer: OperatorDep, _form: FormDep) -> Response:
    """Walk the chain now; on failure the first broken event is linked."""
    report = backend(request).verify_audit(viewer.principal)
    return render(request, "operator/verify.html", viewer, report=report)


@router.get("/budgets")
def budgets(request: Request, viewer: OperatorDep) -> Response:
    """Every organisation's budget per policy."""
    rows = [
        (b, charts.meter(b.epsilon_granted, b.epsilon_spent, b.epsilon_reserved))
        for b in backend(request).budgets(viewer.principal)
    ]
    return render(request, "operator/budgets.html", viewer, rows=rows)


@router.get("/users")
def users(request: Request, viewer: OperatorDep) -> Response:
    """Users, their roles and organisations, and their tokens (never the secrets)."""
    return render(request, "operator/users.html", viewer, users=backend(request).users(viewer.principal))


@router.post("/tokens/{token_id}/revoke")
def revoke_token(request: Request, viewer: OperatorDep, _form: FormDep, token_id: str) -> Response:
    """Revoke an API token; sessions signed in with it end at their next page."""
    backend(request).revoke_token(viewer.principal, token_id)
    return RedirectResponse(f"{base_url(request)}/operator/users", status_code=303)


@router.get("/usage")
def usage(request: Request, viewer: OperatorDep) -> Response:
    """Usage over time across every organisation and dataset."""
    return render(request, "usage.html", viewer, **usage_charts(request, viewer))
