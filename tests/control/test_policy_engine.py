"""The pure policy engine: every rule id, its message and the order rules are checked in."""

from __future__ import annotations

from datetime import timedelta

import pytest
from control_support import ANALYST_A, ANALYST_B, OWNER, START, make_dataset, make_summary

from sandbox.budget import Allowance, BudgetState, delta_units, epsilon_units
from sandbox.catalog.models import Classification, DatasetRecord
from sandbox.errors import BudgetExhausted, PolicyDenied
from sandbox.policies.engine import decide
from sandbox.policies.models import Decision, PolicyStatus, PolicyView
from sandbox.principals import Principal
from sandbox.query.summary import AggregateKind

DATASET = make_dataset()
PLENTY = BudgetState(epsilon_units(5.0, up=False), 0, delta_units(1e-5, up=False), 0)


def policy(**changes: object) -> PolicyView:
    """An active policy of acme on ``residents`` valid around ``START``."""
    base = PolicyView(
        id="pol_1",
        request_id="req_1",
        organisation="acme",
        dataset="residents",
        dataset_owner="city_stats",
        columns=("age", "people.district"),
        epsilon=5.0,
        delta=1e-5,
        max_epsilon_per_query=0.5,
        max_delta_per_query=1e-6,
        min_group_size=5,
        aggregates=(AggregateKind.COUNT, AggregateKind.SUM),
        valid_from=START - timedelta(days=1),
        valid_until=START + timedelta(days=1),
        status=PolicyStatus.ACTIVE,
        approved_by="otto",
        approved_at=START - timedelta(days=1),
    )
    return base.model_copy(update=changes)


def test_allows_a_query_within_the_policy() -> None:
    summary = make_summary(DATASET, columns=("age",), group_by=("district",), epsilon=0.5, delta=1e-6)
    assert decide(ANALYST_A, DATASET, policy(), summary, PLENTY, START) == Decision.allow()


@pytest.mark.parametrize(
    ("principal", "dataset", "current", "rule"),
    [
        (OWNER, DATASET, policy(), "policy.not_analyst"),
        (ANALYST_A, make_dataset(classification=Classification.CORE), policy(), "policy.core_dataset"),
        (ANALYST_A, DATASET, None, "policy.no_active_policy"),
        (ANALYST_B, DATASET, policy(), "policy.no_active_policy"),
        (ANALYST_A, make_dataset("other"), policy(), "policy.no_active_policy"),
        (ANALYST_A, DATASET, policy(status=PolicyStatus.REVOKED, reason="misuse"), "policy.revoked"),
        (ANALYST_A, DATASET, policy(status=PolicyStatus.EXPIRED), "policy.expired"),
        (ANALYST_A, DATASET, policy(valid_until=START), "policy.expired"),
        (ANALYST_A, DATASET, policy(valid_from=START + timedelta(hours=1)), "policy.not_yet_valid"),
    ],
)
def test_access_rules(
    principal: Principal, dataset: DatasetRecord, current: PolicyView | None, rule: str
) -> None:
    decision = decide(principal, dataset, current, make_summary(dataset), PLENTY, START)
    assert not decision.allowed
    assert decision.rule == rule
    assert decision.message
    error = decision.error()
    assert isinstance(error, PolicyDenied) and not isinstance(error, BudgetExhausted)
    assert error.rule == rule and error.code == rule and error.http_status == 403


def test_revocation_reason_is_in_the_message() -> None:
    decision = decide(
        ANALYST_A,
        DATASET,
        policy(status=PolicyStatus.REVOKED, reason="misuse"),
        make_summary(DATASET),
        PLENTY,
        START,
    )
    assert "misuse" in decision.message and "request access again" in decision.message


def test_column_not_granted_names_the_column_and_what_is_granted() -> None:
    summary = make_summary(DATASET, columns=("age", "income"))
    decision = decide(ANALYST_A, DATASET, policy(), summary, PLENTY, START)
    assert decision.rule == "policy.column_not_granted"
    assert decision.details["columns"] == ["income"]
    assert "income" in decision.message and "granted: age, people.district" in decision.message


def test_group_by_columns_must_be_granted_too() -> None:
    summary = make_summary(DATASET, columns=("age",), group_by=("ssn",))
    assert decide(ANALYST_A, DATASET, policy(), summary, PLENTY, START).rule == "policy.column_not_granted"


def test_table_qualified_grant_matches_case_insensitively() -> None:
    summary = make_summary(DATASET, columns=("AGE",), group_by=("District",))
    assert decide(ANALYST_A, DATASET, policy(), summary, PLENTY, START).allowed


def test_aggregate_not_allowed() -> None:
    summary = make_summary(DATASET, aggregates=(AggregateKind.COUNT, AggregateKind.QUANTILE))
    decision = decide(ANALYST_A, DATASET, policy(), summary, PLENTY, START)
    assert decision.rule == "policy.aggregate_not_allowed"
    assert decision.details == {"aggregates": ["quantile"], "allowed": ["count", "sum"]}


def test_epsilon_per_query_cap_says_requested_cap_and_difference() -> None:
    decision = decide(ANALYST_A, DATASET, policy(), make_summary(DATASET, epsilon=0.7), PLENTY, START)
    assert decision.rule == "policy.epsilon_per_query_cap"
    assert decision.details == {"requested": "0.7", "cap": "0.5", "difference": "0.2"}
    assert "lower epsilon to at most 0.5" in decision.message


def test_delta_per_query_cap() -> None:
    decision = decide(ANALYST_A, DATASET, policy(), make_summary(DATASET, delta=2e-6), PLENTY, START)
    assert decision.rule == "policy.delta_per_query_cap"
    assert decision.details["difference"] == "0.000001"


def test_epsilon_budget_exhausted_says_remaining_and_difference() -> None:
    budget = BudgetState(epsilon_units(1.0, up=False), epsilon_units(0.7, up=True), 10**10, 0)
    decision = decide(ANALYST_A, DATASET, policy(), make_summary(DATASET, epsilon=0.5), budget, START)
    assert decision.rule == "budget.epsilon_exhausted"
    assert decision.details == {"requested": "0.5", "remaining": "0.3", "difference": "0.2"}
    assert isinstance(decision.error(), BudgetExhausted)


def test_delta_budget_exhausted() -> None:
    budget = BudgetState(10**10, 0, delta_units(1e-6, up=False), delta_units(5e-7, up=True))
    decision = decide(ANALYST_A, DATASET, policy(), make_summary(DATASET, delta=1e-6), budget, START)
    assert decision.rule == "budget.delta_exhausted"
    assert decision.details["remaining"] == "0.0000005"


def test_dataset_cap_exhausted_does_not_reveal_other_organisations_use() -> None:
    budget = BudgetState(
        10**10,
        0,
        10**10,
        0,
        dataset_epsilon=Allowance(epsilon_units(2.0, up=False), epsilon_units(1.95, up=True)),
    )
    decision = decide(ANALYST_A, DATASET, policy(), make_summary(DATASET, epsilon=0.1), budget, START)
    assert decision.rule == "budget.dataset_cap_exhausted"
    assert "1.95" not in decision.message and "0.05" not in decision.message
    assert isinstance(decision.error(), BudgetExhausted)


def test_budget_exactly_affordable_is_allowed() -> None:
    budget = BudgetState(epsilon_units(1.0, up=False), epsilon_units(0.9, up=True), 0, 0)
    assert decide(ANALYST_A, DATASET, policy(), make_summary(DATASET, epsilon=0.1), budget, START).allowed


def test_replays_skip_budget_rules_but_not_policy_rules() -> None:
    empty = BudgetState(0, 0, 0, 0)
    summary = make_summary(DATASET)
    assert decide(ANALYST_A, DATASET, policy(), summary, empty, START, charge=False).allowed
    revoked = policy(status=PolicyStatus.REVOKED)
    assert decide(ANALYST_A, DATASET, revoked, summary, empty, START, charge=False).rule == "policy.revoked"


def test_charges_round_up_so_tiny_epsilons_are_never_free() -> None:
    budget = BudgetState(epsilon_units(1.0, up=False), epsilon_units(1.0, up=False), 0, 0)
    decision = decide(ANALYST_A, DATASET, policy(), make_summary(DATASET, epsilon=1e-12), budget, START)
    assert decision.rule == "budget.epsilon_exhausted"
    assert decision.details["requested"] == "0.000000001"


def test_access_rules_come_before_query_rules_before_budget() -> None:
    summary = make_summary(DATASET, columns=("income",), epsilon=9.0)
    empty = BudgetState(0, 0, 0, 0)
    assert decide(ANALYST_A, DATASET, policy(status=PolicyStatus.EXPIRED), summary, empty, START).rule == (
        "policy.expired"
    )
    assert decide(ANALYST_A, DATASET, policy(), summary, empty, START).rule == "policy.column_not_granted"


def test_allowing_decision_has_no_error() -> None:
    with pytest.raises(ValueError, match="no error"):
        Decision.allow().error()
