"""The unit of accounting is the (organisation, dataset) lifetime loss: across all its policies,
past and present, under the owner's caps; amendments instead of revoke-and-re-grant; identical
content shares one ledger; a new version carries its budget over unless the owner renews it."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
from cp_worker import CONTEXT, run_queries, started

from sandbox.catalog.models import DatasetRecord
from sandbox.control import CachedAnswer, ControlPlane, QueryTicket
from sandbox.errors import BudgetExhausted, Conflict, Forbidden, InvalidRequest
from sandbox.principals import Principal
from sandbox.query.summary import AggregateKind

DATASET = make_dataset()


def spend(
    cp: ControlPlane, epsilon: float, *, dataset: DatasetRecord = DATASET, principal: Principal = ANALYST_A
) -> None:
    """One answered query of ``epsilon``."""
    ticket = cp.begin_query(principal, dataset, make_summary(dataset, epsilon=epsilon), sql="q")
    assert isinstance(ticket, QueryTicket)
    cp.complete_query(ticket, {"columns": ["n"], "rows": [[1]]})


def test_revoke_and_re_approve_cannot_exceed_the_lifetime_cap(cp: ControlPlane, grant: Granter) -> None:
    cp.record_registration(OPERATOR, DATASET)
    cp.set_dataset_cap(OWNER, DATASET, 3.0, 1e-6, organisation="acme")
    first = grant(ANALYST_A, DATASET, epsilon=3.0)
    for _ in range(3):
        spend(cp, 1.0)
    cp.revoke_policy(OWNER, first.id, DATASET, reason="project ended")
    grant(ANALYST_A, DATASET, epsilon=2.0)  # a fresh grant does not mint lifetime budget
    [budget] = [b for b in cp.budget(ANALYST_A) if b.status == "active"]
    assert (budget.epsilon_remaining, budget.lifetime_epsilon_used, budget.lifetime_epsilon_cap) == (
        0,
        3.0,
        3.0,
    )
    with pytest.raises(BudgetExhausted) as raised:
        spend(cp, 0.35)
    assert raised.value.rule == "budget.lifetime_cap_exhausted"
    assert "lifetime cap" in raised.value.message
    assert raised.value.details["remaining"] == "0"
    assert cp.verify_audit().ok


def test_lifetime_loss_is_counted_across_policies_without_a_cap(cp: ControlPlane, grant: Granter) -> None:
    first = grant(ANALYST_A, DATASET, epsilon=3.0)
    for _ in range(3):
        spend(cp, 1.0)
    cp.revoke_policy(OWNER, first.id, DATASET, reason="project ended")
    grant(ANALYST_A, DATASET, epsilon=2.0)
    spend(cp, 0.35)
    active = next(b for b in cp.budget(OWNER) if b.status == "active")
    assert (active.epsilon_spent, active.lifetime_epsilon_used, active.lifetime_epsilon_cap) == (
        0.35,
        3.35,
        None,
    )
    # the owner now caps the organisation's lifetime loss: nothing more may be spent
    cp.set_dataset_cap(OWNER, DATASET, 3.35, None, organisation="acme")
    with pytest.raises(BudgetExhausted):
        spend(cp, 0.01)


def test_default_per_organisation_cap_and_dataset_wide_cap(cp: ControlPlane, grant: Granter) -> None:
    cp.set_dataset_cap(OWNER, DATASET, 0.5, None, per_organisation=True)
    cp.set_dataset_cap(OWNER, DATASET, 0.8, None)
    grant(ANALYST_A, DATASET, epsilon=1.0)
    grant(ANALYST_B, DATASET, epsilon=1.0)
    spend(cp, 0.5)
    with pytest.raises(BudgetExhausted) as raised:
        spend(cp, 0.1)
    assert raised.value.rule == "budget.lifetime_cap_exhausted"
    spend(cp, 0.3, principal=ANALYST_B)
    with pytest.raises(BudgetExhausted) as raised:
        spend(cp, 0.1, principal=ANALYST_B)
    assert raised.value.rule == "budget.dataset_cap_exhausted"
    with pytest.raises(Forbidden):
        cp.set_dataset_cap(OTHER_OWNER, DATASET, 9.0, None, organisation="acme")
    with pytest.raises(InvalidRequest):
        cp.set_dataset_cap(OWNER, DATASET, 1.0, None, organisation="acme", per_organisation=True)
    [event] = cp.audit_events(OPERATOR, type="budget.cap_set")[:1]
    assert event.payload["scope"] == "per_organisation" and event.payload["epsilon"] == "0.5"


def test_amend_tops_up_extends_and_narrows_with_old_and_new_values(
    cp: ControlPlane, grant: Granter, clock: Clock
) -> None:
    policy = grant(ANALYST_A, DATASET, epsilon=1.0, days=10)
    spend(cp, 0.6)
    later = clock.now + timedelta(days=60)
    amended = cp.amend_policy(
        OWNER,
        policy.id,
        DATASET,
        epsilon=2.0,
        valid_until=later,
        columns=["age"],
        aggregates=[AggregateKind.COUNT],
        reason="phase two",
    )
    assert (amended.id, amended.epsilon, amended.valid_until, amended.columns) == (
        policy.id,
        2.0,
        later,
        ("age",),
    )
    assert next(b for b in cp.budget(ANALYST_A)).epsilon_remaining == 1.4
    [event] = cp.audit_events(OPERATOR, type="policy.amended")
    assert (
        event.actor == "otto"
        and event.payload["old"]["epsilon"] == "1"
        and event.payload["new"]["epsilon"] == "2"
    )
    assert event.payload["old"]["columns"] == ["age", "district", "income"] and event.payload["new"][
        "columns"
    ] == ["age"]
    for change, code in (
        ({"columns": ["age", "ssn"]}, "amend.widens_policy"),
        ({"epsilon": 0.5}, "amend.below_spent"),
        ({"valid_until": clock.now - timedelta(days=1)}, "amend.invalid_validity"),
        ({"epsilon": 2.0}, "amend.no_change"),
    ):
        with pytest.raises(InvalidRequest) as raised:
            cp.amend_policy(OWNER, policy.id, DATASET, **change)
        assert raised.value.code == code
    with pytest.raises(Forbidden):
        cp.amend_policy(OTHER_OWNER, policy.id, DATASET, epsilon=5.0)
    cp.revoke_policy(OWNER, policy.id, DATASET, reason="done")
    with pytest.raises(Conflict):
        cp.amend_policy(OWNER, policy.id, DATASET, epsilon=5.0)
    assert cp.verify_audit().ok


def test_identical_content_under_a_new_name_shares_one_ledger(cp: ControlPlane, grant: Granter) -> None:
    cp.record_registration(OPERATOR, DATASET)
    twin = DATASET.model_copy(
        update={
            "metadata": DATASET.metadata.model_copy(update={"dataset": "residents_copy"}),
            "version": "f" * 64,
        }
    )
    cp.record_registration(OPERATOR, twin)
    cp.set_dataset_cap(OWNER, DATASET, 1.0, None, organisation="acme")
    grant(ANALYST_A, DATASET, epsilon=1.0)
    grant(ANALYST_A, twin, epsilon=1.0)
    spend(cp, 0.7)
    with pytest.raises(BudgetExhausted) as raised:
        spend(cp, 0.5, dataset=twin)
    assert raised.value.rule == "budget.lifetime_cap_exhausted"
    spend(cp, 0.3, dataset=twin)
    assert {b.ledger for b in cp.budget(OPERATOR)} == {"residents"}
    [registered] = cp.audit_events(OPERATOR, dataset="residents_copy", type="dataset.registered")
    assert registered.payload["ledger"] == "residents"
    assert cp.verify_audit().ok


@pytest.mark.parametrize(("choice", "shared"), [("carry", True), ("renew", False)])
def test_a_new_version_carries_the_budget_over_unless_renewed(
    cp: ControlPlane, grant: Granter, choice: str, shared: bool
) -> None:
    cp.record_registration(OPERATOR, DATASET)
    cp.set_dataset_cap(OWNER, DATASET, 1.0, None, per_organisation=True)
    grant(ANALYST_A, DATASET, epsilon=2.0)
    spend(cp, 1.0)
    new_table = DATASET.tables[0].model_copy(update={"content_sha256": "e" * 64})
    version_two = DATASET.model_copy(update={"tables": [new_table], "version": "2" * 64})
    cp.record_registration(OWNER, version_two, new_version_budget=choice)  # type: ignore[arg-type]
    [budget] = cp.budget(ANALYST_A)
    if shared:
        assert (budget.ledger, budget.lifetime_epsilon_used, budget.epsilon_remaining) == (
            "residents",
            1.0,
            0,
        )
    else:
        assert budget.ledger == f"residents@{'2' * 12}" and budget.lifetime_epsilon_used == 0
        spend(cp, 0.5, dataset=version_two)
    assert cp.verify_audit().ok


def test_fifty_queries_from_several_processes_against_a_lifetime_cap_affording_ten(
    cp: ControlPlane, clock: Clock, grant: Granter, db_url: str, tmp_path: Path
) -> None:
    clock.now = datetime.now(UTC)
    cp.set_dataset_cap(OWNER, DATASET, 1.0, None, organisation="acme")
    grant(ANALYST_A, DATASET, epsilon=5.0, max_epsilon_per_query=0.1)
    counts = [17, 17, 16]
    start = CONTEXT.Barrier(len(counts))
    results: multiprocessing.Queue[list[str]] = CONTEXT.Queue()
    home = str(tmp_path / "home")
    with started(run_queries, [(db_url, home, n, 0.1, start, results) for n in counts]) as workers:
        outcomes = [outcome for _ in workers for outcome in results.get(timeout=120)]
        for worker in workers:
            worker.join(timeout=30)
            assert worker.exitcode == 0
    assert Counter(outcomes) == {"answered": 10, "budget.lifetime_cap_exhausted": 40}
    [budget] = cp.budget(OPERATOR)
    assert (budget.lifetime_epsilon_used, budget.epsilon_spent, budget.epsilon_remaining) == (1.0, 1.0, 0.0)
    assert cp.verify_audit().ok


def test_a_replay_reports_what_the_lifetime_cap_leaves(cp: ControlPlane, grant: Granter) -> None:
    cp.set_dataset_cap(OWNER, DATASET, 0.5, None, organisation="acme")
    grant(ANALYST_A, DATASET, epsilon=1.0)
    summary = make_summary(DATASET, epsilon=0.3, sql="SELECT COUNT(*) FROM people")
    ticket = cp.begin_query(ANALYST_A, DATASET, summary, sql="q")
    assert isinstance(ticket, QueryTicket) and ticket.epsilon_remaining == 0.2
    cp.complete_query(ticket, {"columns": ["n"], "rows": [[1]]})
    replayed = cp.begin_query(ANALYST_A, DATASET, summary, sql="q")
    assert isinstance(replayed, CachedAnswer) and replayed.epsilon_remaining == 0.2


def test_caps_on_a_ledger_shared_with_another_body_may_only_be_tightened(cp: ControlPlane) -> None:
    cp.record_registration(OPERATOR, DATASET)
    theirs = make_dataset("health_copy", owner="health_bureau")
    theirs = theirs.model_copy(update={"tables": DATASET.tables})  # identical content, other body
    cp.record_registration(OPERATOR, theirs)
    cp.set_dataset_cap(OWNER, DATASET, 2.0, None)
    cp.set_dataset_cap(OTHER_OWNER, theirs, 1.5, None)  # tightening is allowed to either owner
    for loosen in (3.0, None):
        with pytest.raises(Forbidden) as raised:
            cp.set_dataset_cap(OWNER, DATASET, loosen, None)
        assert raised.value.code == "cap.shared_ledger"
    cp.set_dataset_cap(OWNER, DATASET, 1.0, None)
