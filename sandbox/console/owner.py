"""Data owner pages: the inbox of pending requests, deciding them, policies, datasets, usage charts."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from sandbox.api.schemas import Approval, DatasetRegistration, Rejection, Revocation
from sandbox.console import charts
from sandbox.console.forms import many, one, parse
from sandbox.console.web import FormDep, OwnerDep, Viewer, backend, base_url, render
from sandbox.errors import InvalidRequest, MetadataInvalid, SandboxError
from sandbox.query.summary import AggregateKind

router = APIRouter(prefix="/owner")

WEEKS = 8
NUMBERS = ("epsilon", "delta", "max_epsilon_per_query", "max_delta_per_query", "min_group_size")


@router.get("")
def inbox(request: Request, viewer: OwnerDep) -> Response:
    """Pending requests on the owner's datasets, with each organisation's loss on the dataset so far."""
    found = backend(request).requests(viewer.principal, "pending")
    spent = {
        (r.organisation, r.dataset): backend(request).lifetime_spent(
            viewer.principal, r.organisation, r.dataset
        )
        for r in found
    }
    return render(request, "owner/inbox.html", viewer, requests=found, spent=spent)


def _decision_page(
    request: Request,
    viewer: OwnerDep,
    request_id: str,
    *,
    form: dict[str, Any] | None = None,
    problems: list[tuple[str, str]] | None = None,
    status: int = 200,
) -> Response:
    access = backend(request).access_request(viewer.principal, request_id)
    record = backend(request).dataset(viewer.principal, access.dataset)
    defaults = {
        "columns": list(access.columns),
        "epsilon": str(access.epsilon),
        "delta": str(access.delta),
        "valid_until": access.valid_until.strftime("%Y-%m-%d"),
        "max_epsilon_per_query": str(min(access.epsilon, 1.0)),
        "max_delta_per_query": "0",
        "min_group_size": "0",
        "aggregates": [a.value for a in AggregateKind],
    }
    shown = {**defaults, **(form or {})}
    if form is not None:
        shown["columns"] = many(form, "columns")
        shown["aggregates"] = many(form, "aggregates")
    return render(
        request,
        "owner/decide.html",
        viewer,
        status_code=status,
        access=access,
        record=record,
        spent=backend(request).lifetime_spent(viewer.principal, access.organisation, access.dataset),
        form=shown,
        problems=problems or [],
        aggregates=[a.value for a in AggregateKind],
    )


@router.get("/requests/{request_id}")
def decide(request: Request, viewer: OwnerDep, request_id: str) -> Response:
    """One request with the approve (narrowing) and reject forms."""
    return _decision_page(request, viewer, request_id)


@router.post("/requests/{request_id}/approve")
def approve(request: Request, viewer: OwnerDep, form: FormDep, request_id: str) -> Response:
    """Approve with what the form narrowed; every problem is shown at once."""
    data: dict[str, Any] = {
        k: one(form, k)
        for k in (
            "epsilon",
            "delta",
            "valid_until",
            "max_epsilon_per_query",
            "max_delta_per_query",
            "min_group_size",
        )
    }
    data["columns"] = many(form, "columns") or None
    data["aggregates"] = many(form, "aggregates") or None
    body, problems = parse(Approval, data, NUMBERS)
    if body is None:
        return _decision_page(request, viewer, request_id, form=form, problems=problems, status=422)
    try:
        backend(request).approve(viewer.principal, request_id, body)
    except SandboxError as error:
        if error.http_status not in (409, 422):
            raise
        return _decision_page(
            request,
            viewer,
            request_id,
            form=form,
            problems=[(error.code, error.message)],
            status=error.http_status,
        )
    return RedirectResponse(f"{base_url(request)}/owner/policies", status_code=303)


@router.post("/requests/{request_id}/reject")
def reject(request: Request, viewer: OwnerDep, form: FormDep, request_id: str) -> Response:
    """Reject with the reason the analyst will read."""
    body, problems = parse(Rejection, {"reason": one(form, "reason")})
    if body is None:
        return _decision_page(request, viewer, request_id, problems=problems, status=422)
    backend(request).reject(viewer.principal, request_id, body)
    return RedirectResponse(f"{base_url(request)}/owner", status_code=303)


@router.get("/policies")
def policies(request: Request, viewer: OwnerDep) -> Response:
    """Policies on the owner's datasets, with budget meters and revocation."""
    budgets = {b.policy_id: b for b in backend(request).budgets(viewer.principal)}
    rows = []
    for policy in backend(request).policies(viewer.principal):
        budget = budgets.get(policy.id)
        meter = (
            charts.meter(budget.epsilon_granted, budget.epsilon_spent, budget.epsilon_reserved)
            if budget
            else None
        )
        rows.append((policy, meter))
    return render(request, "owner/policies.html", viewer, rows=rows)


@router.post("/policies/{policy_id}/revoke")
def revoke(request: Request, viewer: OwnerDep, form: FormDep, policy_id: str) -> Response:
    """Revoke an active policy; the next query under it is refused."""
    body, _ = parse(Revocation, {"reason": one(form, "reason")})
    if body is None:
        raise InvalidRequest("a revocation needs a reason", code="request.invalid")
    backend(request).revoke(viewer.principal, policy_id, body)
    return RedirectResponse(f"{base_url(request)}/owner/policies", status_code=303)


@router.get("/datasets")
def datasets(request: Request, viewer: OwnerDep) -> Response:
    """The owner's datasets."""
    own = [
        r
        for r in backend(request).datasets(viewer.principal)
        if r.metadata.owner == viewer.principal.organisation
    ]
    return render(request, "owner/datasets.html", viewer, datasets=own)


@router.get("/datasets/{name}")
def dataset(request: Request, viewer: OwnerDep, name: str) -> Response:
    """Metadata, fingerprints and the certificate's verification status."""
    record = backend(request).dataset(viewer.principal, name)
    certificate = backend(request).certificate(viewer.principal, name)
    report = backend(request).verify_certificate(certificate)
    lifetime = {
        b.organisation: (b.lifetime_epsilon_used, b.lifetime_epsilon_cap)
        for b in backend(request).budgets(viewer.principal)
        if b.dataset == name
    }
    return render(
        request,
        "owner/dataset.html",
        viewer,
        record=record,
        certificate=certificate,
        report=report,
        lifetime=sorted(lifetime.items()),
    )


@router.get("/datasets/{name}/certificate")
def certificate_file(request: Request, viewer: OwnerDep, name: str) -> Response:
    """The registration certificate (登记存证) as a JSON download."""
    certificate = backend(request).certificate(viewer.principal, name)
    return Response(
        json.dumps(certificate, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}-certificate.json"'},
    )


def _import_files(request: Request) -> list[str]:
    root = backend(request).services.settings.effective_import_dir
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.y*ml"))[:200]


@router.get("/register")
def register_form(request: Request, viewer: OwnerDep) -> Response:
    """Register a dataset from a metadata file in the import folder."""
    return render(request, "owner/register.html", viewer, files=_import_files(request), problems=[], form={})


@router.post("/register")
def register(request: Request, viewer: OwnerDep, form: FormDep) -> Response:
    """Register; a metadata file with problems shows every one of them."""
    body, shape = parse(
        DatasetRegistration,
        {"metadata_path": one(form, "metadata_path"), "replace": form.get("replace") == "on"},
    )
    problems = [f"{field}: {message}" for field, message in shape]
    if body is not None:
        try:
            record = backend(request).register(viewer.principal, body)
        except MetadataInvalid as error:
            problems = [str(p) for p in error.details.get("problems", [])] or [error.message]
        except SandboxError as error:
            if error.http_status not in (404, 409, 422):
                raise
            problems = [f"{error.code}: {error.message}"]
        else:
            return RedirectResponse(f"{base_url(request)}/owner/datasets/{record.name}", status_code=303)
    return render(
        request,
        "owner/register.html",
        viewer,
        status_code=422,
        files=_import_files(request),
        problems=problems,
        form=form,
    )


@router.get("/usage")
def usage(request: Request, viewer: OwnerDep) -> Response:
    """Epsilon spent per organisation per week, queries answered and refused, refusals by rule."""
    return render(request, "usage.html", viewer, **usage_charts(request, viewer))


def usage_charts(request: Request, viewer: Viewer) -> dict[str, Any]:
    """The charts of the usage page (owners: their datasets; operators: everything)."""
    weeks = backend(request).weekly_usage(viewer.principal, WEEKS)
    spent = []
    outcomes = []
    for start, report in weeks:
        label = start.strftime("%m-%d")
        per_org: dict[str, float] = {}
        answered = refused = 0
        for row in report.rows:
            per_org[row.organisation or "-"] = per_org.get(row.organisation or "-", 0.0) + row.epsilon_spent
            answered += row.queries_answered + row.queries_cached
            refused += row.queries_rejected
        spent.append((label, per_org))
        outcomes.append((label, {"answered": float(answered), "refused": float(refused)}))
    return {
        "spent": charts.stacked(spent),
        "outcomes": charts.stacked(outcomes),
        "refusals": charts.bars(
            [(rule, float(n)) for rule, n in backend(request).refusals_by_rule(viewer.principal)[:12]]
        ),
    }
