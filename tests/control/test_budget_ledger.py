"""The budget ledger through ``begin_query`` / ``complete_query``: exact charges, denials with their
rule ids (recorded, never charged), replay, dataset-wide caps, shared organisation budgets and
tenant isolation of queries and budgets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from control_support import (
    ANALYST_A,
    ANALYST_A2,
    ANALYST_B,
    OPERATOR,
    OTHER_OWNER,
    OWNER,
    Clock,
    Granter,
    make_dataset,
    make_summary,
)

from sandbox.catalog.models import Classification, DatasetRecord
from sandbox.control import BudgetView, CachedAnswer, ControlPlane, QueryTicket
from sandbox.control.ledger import QueryStatus
from sandbox.errors import (
    BudgetExhausted,
    Conflict,
    Forbidden,
    NotFound,
    PolicyDenied,
    QueryFailed,
    QueryRejected,
)
from sandbox.principals import Principal
from sandbox.query.summary import AggregateKind, QuerySummary

DATASET = make_dataset()
ANSWER = {"columns": ["district", "n"], "rows": [["north", 1021.4], ["south", 998.2]]}


def run(
    cp: ControlPlane,
    summary: QuerySummary,
    principal: Principal = ANALYST_A,
    dataset: DatasetRecord = DATASET,
) -> QueryTicket | CachedAnswer:
    """Begin and, unless replayed, complete a query."""
    outcome = cp.begin_query(principal, dataset, summary, sql=summary.normalized_sql)
    if isinstance(outcome, QueryTicket):
        cp.complete_query(outcome, ANSWER)
    return outcome


def only_budget(cp: ControlPlane, principal: Principal = ANALYST_A) -> BudgetView:
    [budget] = [b for b in cp.budget(principal) if b.status == "active"]
    return budget


def types(cp: ControlPlane) -> list[str]:
    return [e.type for e in cp.audit_events(OPERATOR) if e.type.startswith("query.")]


def test_reserve_then_charge_exactly(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=1.0, delta=1e-6)
    ticket = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.3, delta=1e-7), sql="q1")
    assert isinstance(ticket, QueryTicket)
    assert (ticket.epsilon, ticket.delta) == (0.3, 1e-7)
    assert (ticket.epsilon_remaining, ticket.delta_remaining) == (0.7, 9e-7)
    reserved = only_budget(cp)
    assert (reserved.epsilon_reserved, reserved.epsilon_spent, reserved.epsilon_remaining) == (0.3, 0.0, 0.7)
    assert cp.get_query(ANALYST_A, ticket.query_id).status == QueryStatus.RESERVED
    cp.complete_query(ticket, ANSWER)
    charged = only_budget(cp)
    assert (charged.epsilon_reserved, charged.epsilon_spent, charged.epsilon_remaining) == (0.0, 0.3, 0.7)
    assert (charged.delta_spent, charged.delta_remaining) == (1e-7, 9e-7)
    view = cp.get_query(ANALYST_A, ticket.query_id)
    assert view.status == QueryStatus.ANSWERED and view.epsilon == 0.3
    assert view.result_shape == {"columns": ["district", "n"], "rows": 2}
    assert types(cp) == ["query.reserved", "query.answered"]
    answered = cp.audit_events(OPERATOR, type="query.answered")[0].payload
    assert answered["epsilon"] == "0.3" and "1021.4" not in str(answered)


def test_ten_tenths_spend_exactly_one(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=1.0)
    for _ in range(10):
        run(cp, make_summary(DATASET, epsilon=0.1))
    assert only_budget(cp).epsilon_remaining == 0.0
    with pytest.raises(BudgetExhausted) as raised:
        run(cp, make_summary(DATASET, epsilon=0.1))
    assert raised.value.rule == "budget.epsilon_exhausted"
    assert raised.value.details["remaining"] == "0"


def test_charges_round_up(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=1.0)
    for _ in range(2):
        run(cp, make_summary(DATASET, epsilon=1 / 3))
    with pytest.raises(BudgetExhausted):  # 3 x ceil(1/3 in 1e-9 units) > 1
        run(cp, make_summary(DATASET, epsilon=1 / 3))
    assert only_budget(cp).epsilon_spent == 0.666666668


def test_failed_query_keeps_its_charge(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=1.0)
    ticket = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.4), sql="q")
    assert isinstance(ticket, QueryTicket)
    cp.fail_query(ticket, QueryFailed("query exceeded its time limit", code="query.timeout"))
    assert only_budget(cp).epsilon_spent == 0.4
    view = cp.get_query(ANALYST_A, ticket.query_id)
    assert (view.status, view.error_code) == (QueryStatus.FAILED, "query.timeout")
    with pytest.raises(Conflict):
        cp.complete_query(ticket, ANSWER)
    assert types(cp) == ["query.reserved", "query.failed"]


def test_rejected_before_planning_costs_nothing(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=1.0)
    error = QueryRejected("sql.not_select", "only SELECT statements are accepted")
    query_id = cp.reject_query(ANALYST_A, "residents", "DROP TABLE people", error)
    view = cp.get_query(ANALYST_A, query_id)
    assert (view.status, view.rule, view.epsilon) == (QueryStatus.REJECTED, "sql.not_select", 0.0)
    assert only_budget(cp).epsilon_spent == 0.0
    assert cp.get_query(OWNER, query_id).id == query_id  # the dataset owner sees it
    [event] = cp.audit_events(OPERATOR, type="query.rejected")
    assert event.payload["rule"] == "sql.not_select" and event.payload["sql"] == "DROP TABLE people"
    # an unknown dataset name is recorded too, visible to the organisation only
    unknown = cp.reject_query(ANALYST_A, "nope", "SELECT 1", QueryRejected("sql.unknown_dataset", "no"))
    assert cp.get_query(ANALYST_A, unknown).dataset == "nope"
    with pytest.raises(NotFound):
        cp.get_query(OWNER, unknown)


def policy_denial_cases() -> list[tuple[str, dict[str, Any], str]]:
    return [
        ("column", {"columns": ("ssn",)}, "policy.column_not_granted"),
        ("aggregate", {"aggregates": (AggregateKind.QUANTILE,)}, "policy.aggregate_not_allowed"),
        ("epsilon cap", {"epsilon": 0.6}, "policy.epsilon_per_query_cap"),
        ("delta cap", {"delta": 1e-6}, "policy.delta_per_query_cap"),
    ]


@pytest.mark.parametrize(("name", "changes", "rule"), policy_denial_cases())
def test_query_denials_are_recorded_and_free(
    cp: ControlPlane, grant: Granter, name: str, changes: dict[str, Any], rule: str
) -> None:
    grant(
        ANALYST_A,
        DATASET,
        epsilon=2.0,
        delta=1e-6,
        max_epsilon_per_query=0.5,
        max_delta_per_query=1e-7,
        aggregates=[AggregateKind.COUNT, AggregateKind.SUM],
    )
    with pytest.raises(PolicyDenied) as raised:
        run(cp, make_summary(DATASET, **changes))
    assert raised.value.rule == rule and raised.value.http_status == 403
    view = cp.get_query(ANALYST_A, raised.value.details["query_id"])
    assert (view.status, view.rule, view.epsilon) == (QueryStatus.REJECTED, rule, 0.0)
    assert only_budget(cp).epsilon_spent == 0.0
    assert cp.audit_events(OPERATOR, type="query.rejected")[0].payload["rule"] == rule


@pytest.mark.parametrize(
    ("principal", "dataset", "rule"),
    [
        (OWNER, DATASET, "policy.not_analyst"),
        (ANALYST_A, make_dataset("vault", classification=Classification.CORE), "policy.core_dataset"),
        (ANALYST_B, DATASET, "policy.no_active_policy"),
    ],
)
def test_access_denials_through_begin_query(
    cp: ControlPlane, grant: Granter, principal: Principal, dataset: DatasetRecord, rule: str
) -> None:
    grant(ANALYST_A, DATASET)
    with pytest.raises(PolicyDenied) as raised:
        run(cp, make_summary(dataset), principal=principal, dataset=dataset)
    assert raised.value.rule == rule
    assert cp.get_query(OPERATOR, raised.value.details["query_id"]).rule == rule


def test_delta_budget_exhausted(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=5.0, delta=1e-6)
    run(cp, make_summary(DATASET, delta=6e-7))
    with pytest.raises(BudgetExhausted) as raised:
        run(cp, make_summary(DATASET, delta=6e-7))
    assert raised.value.rule == "budget.delta_exhausted"
    assert raised.value.details["remaining"] == "0.0000004"


def test_dataset_cap_is_shared_by_all_organisations(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=1.0)
    grant(ANALYST_B, DATASET, epsilon=1.0)
    with pytest.raises(Forbidden):
        cp.set_dataset_cap(OTHER_OWNER, DATASET, 0.5, 0.0)
    with pytest.raises(Forbidden):
        cp.set_dataset_cap(ANALYST_A, DATASET, 0.5, 0.0)
    cp.set_dataset_cap(OWNER, DATASET, 0.5, 1e-6)
    for _ in range(3):
        run(cp, make_summary(DATASET, epsilon=0.1))
    run(cp, make_summary(DATASET, epsilon=0.2), principal=ANALYST_B)
    with pytest.raises(BudgetExhausted) as raised:
        run(cp, make_summary(DATASET, epsilon=0.1), principal=ANALYST_B)
    assert raised.value.rule == "budget.dataset_cap_exhausted"
    assert only_budget(cp, ANALYST_B).epsilon_remaining == 0.8
    [event] = cp.audit_events(OPERATOR, type="budget.cap_set")
    assert event.actor == "otto"
    assert event.payload == {
        "scope": "dataset",
        "ledger": DATASET.name,
        "target_organisation": None,
        "epsilon": "0.5",
        "delta": "0.000001",
    }


def test_colleagues_share_one_budget(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=0.5)
    run(cp, make_summary(DATASET, epsilon=0.3), principal=ANALYST_A)
    with pytest.raises(BudgetExhausted):
        run(cp, make_summary(DATASET, epsilon=0.3), principal=ANALYST_A2)
    run(cp, make_summary(DATASET, epsilon=0.2), principal=ANALYST_A2)
    assert only_budget(cp, ANALYST_A2).epsilon_spent == 0.5


def test_replay_returns_the_stored_answer_at_no_cost(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=0.5)
    summary = make_summary(
        DATASET, epsilon=0.5, sql="SELECT district, COUNT(*) FROM people GROUP BY district"
    )
    first = run(cp, summary)
    assert isinstance(first, QueryTicket)
    for analyst in (ANALYST_A, ANALYST_A2):  # budget exhausted: replays still work, for colleagues too
        again = cp.begin_query(analyst, DATASET, summary, sql="select  district, count(*) ...")
        assert isinstance(again, CachedAnswer)
        assert again.answer == ANSWER and again.replay_of == first.query_id and again.cached
        assert (again.epsilon, again.epsilon_remaining) == (0.0, 0.0)
        assert cp.get_query(analyst, again.query_id).status == QueryStatus.REPLAYED
    assert only_budget(cp).epsilon_spent == 0.5
    assert types(cp) == ["query.reserved", "query.answered", "query.replayed", "query.replayed"]
    assert "1021.4" not in cp.export_audit(OPERATOR, "jsonl")  # answers never enter the chain


def test_no_replay_across_organisations_or_versions(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=1.0)
    grant(ANALYST_B, DATASET, epsilon=1.0)
    summary = make_summary(DATASET, epsilon=0.2, sql="SELECT COUNT(*) FROM people")
    run(cp, summary)
    assert isinstance(run(cp, summary, principal=ANALYST_B), QueryTicket)
    newer = make_dataset(version="f" * 64)
    assert isinstance(
        run(cp, make_summary(newer, epsilon=0.2, sql="SELECT COUNT(*) FROM people"), dataset=newer),
        QueryTicket,
    )
    assert only_budget(cp).epsilon_spent == 0.4


def test_replay_stops_when_the_policy_ends(cp: ControlPlane, grant: Granter, clock: Clock) -> None:
    granted = grant(ANALYST_A, DATASET, epsilon=1.0, days=1)
    summary = make_summary(DATASET, sql="SELECT COUNT(*) FROM people")
    run(cp, summary)
    cp.revoke_policy(OWNER, granted.id, DATASET, reason="audit finding")
    with pytest.raises(PolicyDenied) as raised:
        run(cp, summary)
    assert raised.value.rule == "policy.revoked"


def test_in_flight_completion_is_checked(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET)
    ticket = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET), sql="q")
    assert isinstance(ticket, QueryTicket)
    cp.complete_query(ticket, ANSWER)
    with pytest.raises(Conflict) as raised:
        cp.complete_query(ticket, ANSWER)
    assert raised.value.code == "query.not_reserved"
    with pytest.raises(NotFound):
        cp.complete_query(ticket.model_copy(update={"query_id": "q_missing"}), ANSWER)


def test_abandoned_reservations_are_settled_as_charges(
    cp: ControlPlane, grant: Granter, clock: Clock
) -> None:
    grant(ANALYST_A, DATASET, epsilon=1.0)
    ticket = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.25), sql="q")
    assert isinstance(ticket, QueryTicket)
    assert cp.settle_abandoned(timedelta(minutes=10)) == 0
    clock.advance(minutes=11)
    assert cp.settle_abandoned(timedelta(minutes=10)) == 1
    budget = only_budget(cp)
    assert (budget.epsilon_reserved, budget.epsilon_spent) == (0.0, 0.25)
    assert cp.get_query(ANALYST_A, ticket.query_id).error_code == "query.abandoned"


def test_query_history_is_tenant_isolated(cp: ControlPlane, grant: Granter) -> None:
    clinics = make_dataset("clinics", owner="health_bureau")
    grant(ANALYST_A, DATASET)
    grant(ANALYST_B, clinics, owner=OTHER_OWNER)
    mine = run(cp, make_summary(DATASET))
    theirs = run(cp, make_summary(clinics), principal=ANALYST_B, dataset=clinics)
    assert [q.id for q in cp.list_queries(ANALYST_A)] == [mine.query_id]
    assert [q.id for q in cp.list_queries(ANALYST_A2)] == [mine.query_id]
    assert [q.id for q in cp.list_queries(OWNER)] == [mine.query_id]
    assert [q.id for q in cp.list_queries(OTHER_OWNER)] == [theirs.query_id]
    assert {q.id for q in cp.list_queries(OPERATOR)} == {mine.query_id, theirs.query_id}
    assert cp.list_queries(OPERATOR, dataset="clinics")[0].id == theirs.query_id
    for outsider in (ANALYST_B, OTHER_OWNER):
        with pytest.raises(NotFound):
            cp.get_query(outsider, mine.query_id)
    # an analyst of B cannot spend A's budget: without B's own policy the query is refused
    with pytest.raises(PolicyDenied) as raised:
        run(cp, make_summary(DATASET), principal=ANALYST_B)
    assert raised.value.rule == "policy.no_active_policy"
    assert only_budget(cp, ANALYST_A).epsilon_spent == 0.1
