"""The wire schemas in ``sandbox/api/schemas.py`` are declared apart from the control plane's
domain views (no inheritance), and kept in step with them: same fields, in the same order, with
the same types and the same required-ness. Change one on purpose, then the other."""

from __future__ import annotations

import re

import pytest
from pydantic import BaseModel

from sandbox.api import schemas
from sandbox.audit.models import AuditEventView, StateDivergence, VerifyProblem, VerifyReport
from sandbox.control.ledger import BudgetView, QueryView
from sandbox.control.metering import UsageReport, UsageRow
from sandbox.policies.models import AccessRequestView, PolicyView

PAIRS: list[tuple[type[BaseModel], type[BaseModel]]] = [
    (schemas.AccessRequestOut, AccessRequestView),
    (schemas.PolicyOut, PolicyView),
    (schemas.BudgetOut, BudgetView),
    (schemas.QueryOut, QueryView),
    (schemas.AuditEventOut, AuditEventView),
    (schemas.VerifyProblemOut, VerifyProblem),
    (schemas.StateDivergenceOut, StateDivergence),
    (schemas.VerifyReportOut, VerifyReport),
    (schemas.UsageRowOut, UsageRow),
    (schemas.UsageReportOut, UsageReport),
]
WIRE_OF = {view.__name__: wire.__name__ for wire, view in PAIRS}


def _shape(model: type[BaseModel]) -> list[tuple[str, str, bool]]:
    """(name, type without module paths and with views named as their wire schemas, required)."""
    shape = []
    for name, field in model.model_fields.items():
        annotation = re.sub(r"<(?:class|enum) '([\w.]+)'>", r"\1", str(field.annotation))
        annotation = re.sub(r"\b(?:[A-Za-z_]\w*\.)+(\w+)", r"\1", annotation)
        annotation = re.sub(r"\b(\w+)\b", lambda m: WIRE_OF.get(m.group(1), m.group(1)), annotation)
        shape.append((name, annotation, field.is_required()))
    return shape


@pytest.mark.parametrize(("wire", "view"), PAIRS, ids=[wire.__name__ for wire, _ in PAIRS])
def test_wire_schema_is_apart_from_and_in_step_with_its_view(
    wire: type[BaseModel], view: type[BaseModel]
) -> None:
    assert not issubclass(wire, view) and not issubclass(view, wire)
    assert _shape(wire) == _shape(view)


def test_a_view_serialises_into_its_wire_schema() -> None:
    from datetime import UTC, datetime

    event = AuditEventView(
        seq=1,
        type="user.added",
        time="t",
        actor="a",
        organisation=None,
        dataset=None,
        payload={},
        prev_hash="0",
        hash="1",
    )
    assert schemas.AuditEventOut.model_validate(event.model_dump()).model_dump() == event.model_dump()
    report = UsageReport(since=datetime(2030, 1, 1, tzinfo=UTC), until=None, rows=())
    assert schemas.UsageReportOut.model_validate(report.model_dump()).model_dump() == report.model_dump()
