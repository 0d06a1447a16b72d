"""Analyst pages: policies with budget meters, the catalogue, requesting access, history, a SQL page.

Analysts never see data digests: datasets show their name, title and registration date, history
shows no version or fingerprint. Notebooks stay the main tool; the SQL page is for a quick look.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from sandbox.api.schemas import AccessRequestCreate, QueryRequest
from sandbox.catalog.models import Classification
from sandbox.console import charts
from sandbox.console.forms import many, one, parse
from sandbox.console.web import AnalystDep, FormDep, backend, base_url, render
from sandbox.errors import SandboxError

router = APIRouter(prefix="/analyst")


@router.get("")
def home(request: Request, viewer: AnalystDep) -> Response:
    """The organisation's policies, each with its budget meter."""
    budgets = backend(request).budgets(viewer.principal)
    meters = [(b, charts.meter(b.epsilon_granted, b.epsilon_spent, b.epsilon_reserved)) for b in budgets]
    hub = backend(request).services.settings.auth_mode == "jupyterhub"
    return render(request, "analyst/home.html", viewer, meters=meters, hub=hub)


@router.get("/catalogue")
def catalogue(request: Request, viewer: AnalystDep) -> Response:
    """Datasets the analyst may ask for (core datasets are not listed)."""
    found = [
        r
        for r in backend(request).datasets(viewer.principal)
        if r.metadata.classification != Classification.CORE
    ]
    active = {p.dataset for p in backend(request).policies(viewer.principal) if p.status == "active"}
    return render(request, "analyst/catalogue.html", viewer, datasets=found, active=active)


@router.get("/catalogue/{name}")
def dataset(request: Request, viewer: AnalystDep, name: str) -> Response:
    """One dataset: tables, column roles, bounds and public keys."""
    record = backend(request).dataset(viewer.principal, name)
    return render(request, "analyst/dataset.html", viewer, record=record)


def _request_form(
    request: Request, viewer: AnalystDep, form: dict[str, Any], problems: list[tuple[str, str]], status: int
) -> Response:
    found = [
        r
        for r in backend(request).datasets(viewer.principal)
        if r.metadata.classification != Classification.CORE
    ]
    chosen = next((r for r in found if r.name == form.get("dataset")), found[0] if found else None)
    return render(
        request,
        "analyst/request_form.html",
        viewer,
        status_code=status,
        datasets=found,
        chosen=chosen,
        form=form,
        problems=problems,
    )


@router.get("/requests/new")
def request_form(request: Request, viewer: AnalystDep, dataset: str = "") -> Response:
    """The request-access form (columns of the chosen dataset as checkboxes)."""
    return _request_form(request, viewer, {"dataset": dataset}, [], 200)


@router.post("/requests/new")
def request_access(request: Request, viewer: AnalystDep, form: FormDep) -> Response:
    """Send the request; every problem with the form is shown at once."""
    data = {
        "dataset": one(form, "dataset"),
        "purpose": one(form, "purpose"),
        "columns": many(form, "columns"),
        "epsilon": one(form, "epsilon"),
        "delta": one(form, "delta"),
        "valid_until": one(form, "valid_until"),
    }
    body, problems = parse(AccessRequestCreate, data, ("epsilon", "delta"))
    if body is None:
        return _request_form(request, viewer, form, problems, 422)
    backend(request).request_access(viewer.principal, body)
    return RedirectResponse(f"{base_url(request)}/analyst/requests", status_code=303)


@router.get("/requests")
def requests(request: Request, viewer: AnalystDep) -> Response:
    """The organisation's requests and their decisions."""
    return render(
        request, "analyst/requests.html", viewer, requests=backend(request).requests(viewer.principal)
    )


@router.get("/queries")
def history(request: Request, viewer: AnalystDep) -> Response:
    """The organisation's query history (SQL, cost, outcome; never values)."""
    return render(
        request, "analyst/queries.html", viewer, queries=backend(request).queries(viewer.principal, 200)
    )


def _sql_page(
    request: Request, viewer: AnalystDep, form: dict[str, Any], status: int = 200, **extra: Any
) -> Response:
    policies = [p for p in backend(request).policies(viewer.principal) if p.status == "active"]
    return render(
        request,
        "analyst/sql.html",
        viewer,
        status_code=status,
        policies=policies,
        form=form,
        estimate=extra.get("estimate"),
        answer=extra.get("answer"),
        chart=extra.get("chart"),
        error=extra.get("error"),
        problems=extra.get("problems", []),
    )


@router.get("/sql")
def sql_form(request: Request, viewer: AnalystDep, dataset: str = "") -> Response:
    """The SQL page: estimate first, then run."""
    return _sql_page(request, viewer, {"dataset": dataset, "epsilon": "0.5", "delta": "0"})


@router.post("/sql")
def sql_run(request: Request, viewer: AnalystDep, form: FormDep) -> Response:
    """Estimate (spends nothing) or run (spends budget) the query in the form."""
    data = {k: one(form, k) for k in ("dataset", "sql", "epsilon", "delta")}
    body, problems = parse(QueryRequest, data, ("epsilon", "delta"))
    if body is None:
        return _sql_page(request, viewer, form, 422, problems=problems)
    try:
        if form.get("action") == "run":
            answer = backend(request).answer(viewer.token, body)
            return _sql_page(request, viewer, form, answer=answer, chart=_answer_chart(answer))
        return _sql_page(request, viewer, form, estimate=backend(request).estimate(viewer.token, body))
    except SandboxError as error:
        return _sql_page(request, viewer, form, error.http_status, error=error)


def _answer_chart(answer: dict[str, Any]) -> charts.Bars | None:
    """Bars of the first numeric column by the first column, when the answer has both (≤ 40 rows)."""
    rows = answer.get("rows") or []
    columns = answer.get("columns") or []
    if len(columns) < 2 or not rows or len(rows) > 40:
        return None
    for index in range(1, len(columns)):
        if all(isinstance(row[index], int | float) for row in rows):
            return charts.bars([(str(row[0]), max(float(row[index]), 0.0)) for row in rows])
    return None
