"""Metering: usage per organisation and dataset for a period, scoped by role, as JSON rows and CSV."""

from __future__ import annotations

from datetime import timedelta

import pytest
from control_support import (
    ANALYST_A,
    ANALYST_B,
    OPERATOR,
    OTHER_OWNER,
    OWNER,
    Clock,
    Granter,
    make_dataset,
    make_summary,
)

from sandbox.control import ControlPlane, QueryTicket
from sandbox.errors import BudgetExhausted, Forbidden, QueryFailed, QueryRejected

RESIDENTS = make_dataset()
CLINICS = make_dataset("clinics", owner="health_bureau")


@pytest.fixture
def metered(cp: ControlPlane, grant: Granter, clock: Clock) -> ControlPlane:
    """Acme: 2 answered (0.3), 1 replay, 1 failed (0.1), 1 budget refusal, 1 SQL refusal, 1 in flight
    (0.05) on residents; globex: 1 answered (0.2) on clinics, a day later."""
    grant(ANALYST_A, RESIDENTS, epsilon=0.5)
    grant(ANALYST_B, CLINICS, owner=OTHER_OWNER, epsilon=1.0)
    repeated = make_summary(RESIDENTS, epsilon=0.2, sql="SELECT COUNT(*) FROM people")
    for summary in (repeated, make_summary(RESIDENTS, epsilon=0.1), repeated):
        outcome = cp.begin_query(ANALYST_A, RESIDENTS, summary, sql=summary.normalized_sql)
        if isinstance(outcome, QueryTicket):
            cp.complete_query(outcome, {"columns": ["n"], "rows": [[3.0]]})
    failing = cp.begin_query(ANALYST_A, RESIDENTS, make_summary(RESIDENTS, epsilon=0.1), sql="q")
    assert isinstance(failing, QueryTicket)
    cp.fail_query(failing, QueryFailed("time limit", code="query.timeout"))
    with pytest.raises(BudgetExhausted):
        cp.begin_query(ANALYST_A, RESIDENTS, make_summary(RESIDENTS, epsilon=0.2), sql="q")
    cp.reject_query(ANALYST_A, "residents", "DELETE FROM people", QueryRejected("sql.not_select", "no"))
    cp.begin_query(ANALYST_A, RESIDENTS, make_summary(RESIDENTS, epsilon=0.05), sql="in flight")
    clock.advance(days=1)
    ticket = cp.begin_query(ANALYST_B, CLINICS, make_summary(CLINICS, epsilon=0.2), sql="q")
    assert isinstance(ticket, QueryTicket)
    cp.complete_query(ticket, {"columns": ["n"], "rows": []})
    return cp


def test_operator_sees_every_organisation_and_dataset(metered: ControlPlane) -> None:
    report = metered.usage(OPERATOR)
    rows = {(r.organisation, r.dataset): r for r in report.rows}
    acme = rows[("acme", "residents")]
    assert (acme.queries_answered, acme.queries_cached, acme.queries_failed) == (2, 1, 1)
    assert (acme.queries_rejected, acme.queries_in_flight) == (2, 1)
    assert (acme.epsilon_spent, acme.delta_spent) == (0.45, 0.0)
    globex = rows[("globex", "clinics")]
    assert (globex.queries_answered, globex.epsilon_spent) == (1, 0.2)
    assert len(rows) == 2


def test_period_and_filters(metered: ControlPlane, clock: Clock) -> None:
    day_two = clock.now - timedelta(hours=1)
    assert [r.organisation for r in metered.usage(OPERATOR, since=day_two).rows] == ["globex"]
    assert [r.organisation for r in metered.usage(OPERATOR, until=day_two).rows] == ["acme"]
    assert [r.dataset for r in metered.usage(OPERATOR, organisation="globex").rows] == ["clinics"]
    assert [r.dataset for r in metered.usage(OPERATOR, dataset="residents").rows] == ["residents"]


def test_owners_see_their_datasets_only_and_analysts_none(metered: ControlPlane) -> None:
    assert [r.dataset for r in metered.usage(OWNER).rows] == ["residents"]
    assert [r.dataset for r in metered.usage(OTHER_OWNER).rows] == ["clinics"]
    assert metered.usage(OWNER, organisation="globex").rows == ()
    with pytest.raises(Forbidden):
        metered.usage(ANALYST_A)


def test_csv_export(metered: ControlPlane) -> None:
    header, *lines = metered.usage(OPERATOR).to_csv().splitlines()
    assert header.split(",") == [
        "organisation",
        "dataset",
        "queries_answered",
        "queries_rejected",
        "queries_cached",
        "queries_failed",
        "queries_in_flight",
        "epsilon_spent",
        "delta_spent",
    ]
    assert lines == ["acme,residents,2,2,1,1,1,0.45,0.0", "globex,clinics,1,0,0,0,0,0.2,0.0"]
    assert metered.usage(OPERATOR).model_dump(mode="json")["rows"][0]["organisation"] == "acme"
