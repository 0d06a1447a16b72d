"""Data owner pages that change a granted policy or a dataset's lifetime caps.

Amending tops up or cuts the budget, moves the end of validity, narrows columns, aggregates or
per-query caps (``POST /api/v1/policies/{id}/amend``); caps bound the lifetime loss on a dataset
over all organisations, per organisation by default, or for one organisation
(``PUT /api/v1/datasets/{name}/caps``). Only the fields the owner changed are sent.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from sandbox.api.schemas import Amendment, CapSetting
from sandbox.console.forms import many, one, parse
from sandbox.console.web import FormDep, OwnerDep, Viewer, backend, base_url, render
from sandbox.control import PolicyView
from sandbox.errors import InvalidRequest, SandboxError

router = APIRouter(prefix="/owner")

AMEND_NUMBERS = ("epsilon", "delta", "max_epsilon_per_query", "max_delta_per_query")
CAP_NUMBERS = ("epsilon", "delta")


def _current(policy: PolicyView) -> dict[str, Any]:
    return {
        "epsilon": str(policy.epsilon),
        "delta": str(policy.delta),
        "valid_until": policy.valid_until.strftime("%Y-%m-%d"),
        "max_epsilon_per_query": str(policy.max_epsilon_per_query),
        "max_delta_per_query": str(policy.max_delta_per_query),
        "columns": list(policy.columns),
        "aggregates": [str(a) for a in policy.aggregates],
        "reason": "",
    }


def _amend_page(
    request: Request,
    viewer: Viewer,
    policy: PolicyView,
    form: dict[str, Any],
    *,
    problems: list[tuple[str, str]],
    status: int = 200,
) -> Response:
    return render(
        request, "owner/amend.html", viewer, status_code=status, policy=policy, form=form, problems=problems
    )


@router.get("/policies/{policy_id}/amend")
def amend_form(request: Request, viewer: OwnerDep, policy_id: str) -> Response:
    """The amendment form, filled with the policy as it stands."""
    policy = backend(request).policy(viewer.principal, policy_id)
    return _amend_page(request, viewer, policy, _current(policy), problems=[])


@router.post("/policies/{policy_id}/amend")
def amend(request: Request, viewer: OwnerDep, form: FormDep, policy_id: str) -> Response:
    """Send what changed; every problem (the API's rules) is shown at once."""
    policy = backend(request).policy(viewer.principal, policy_id)
    current = _current(policy)
    submitted: dict[str, Any] = {key: one(form, key) for key in (*AMEND_NUMBERS, "valid_until")}
    submitted["columns"] = many(form, "columns")
    submitted["aggregates"] = many(form, "aggregates")
    changed = {key: value for key, value in submitted.items() if value != current[key]}
    changed["reason"] = one(form, "reason") or ""
    shown = {**current, **submitted, "reason": changed["reason"]}
    body, problems = parse(Amendment, changed, AMEND_NUMBERS)
    if body is None:
        return _amend_page(request, viewer, policy, shown, problems=problems, status=422)
    try:
        backend(request).amend(viewer.principal, policy_id, body)
    except SandboxError as error:
        if error.http_status not in (409, 422):
            raise
        return _amend_page(
            request, viewer, policy, shown, problems=[(error.code, error.message)], status=error.http_status
        )
    return RedirectResponse(f"{base_url(request)}/owner/policies", status_code=303)


@router.post("/datasets/{name}/caps")
def set_cap(request: Request, viewer: OwnerDep, form: FormDep, name: str) -> Response:
    """Set (or, with blank amounts, remove) a lifetime cap on the dataset."""
    data = {
        "scope": one(form, "scope"),
        "organisation": one(form, "organisation"),
        "epsilon": one(form, "epsilon"),
        "delta": one(form, "delta"),
    }
    body, problems = parse(CapSetting, data, CAP_NUMBERS)
    if body is None:
        raise InvalidRequest(
            "; ".join(f"{field}: {message}" for field, message in problems), code="request.invalid"
        )
    backend(request).set_cap(viewer.principal, name, body)
    return RedirectResponse(f"{base_url(request)}/owner/datasets/{name}", status_code=303)
