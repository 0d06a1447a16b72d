"""``audit verify`` proves the stored state, not only the events: replaying the chain rebuilds
every policy's status, grants and spent amounts, the lifetime ledgers and accounts and the users,
and each stored value the chain does not prove is named (row, field, chain vs stored)."""

from __future__ import annotations

from typing import Any

import pytest
from control_support import ANALYST_A, OPERATOR, OWNER, Granter, make_dataset, make_summary
from sqlalchemy import update

from sandbox.control import ControlPlane, QueryTicket, StateDivergence
from sandbox.store.db import make_engine
from sandbox.store.models import Base, LedgerAccount, Policy, User

DATASET = make_dataset()


@pytest.fixture
def spent(cp: ControlPlane, grant: Granter) -> tuple[ControlPlane, str]:
    """acme spent 0.5 of a grant of 1.0 on ``residents``, under a lifetime cap of 2."""
    cp.add_user("alice", ["analyst"], "acme", actor="olga")  # type: ignore[list-item]
    cp.set_dataset_cap(OWNER, DATASET, 2.0, None, organisation="acme")
    policy = grant(ANALYST_A, DATASET, epsilon=1.0)
    for _ in range(5):
        ticket = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.1), sql="q")
        assert isinstance(ticket, QueryTicket)
        cp.complete_query(ticket, {"columns": ["n"], "rows": [[1]]})
    assert cp.verify_audit().ok and cp.verify_audit().state_checked
    return cp, policy.id


def tamper(cp: ControlPlane, table: type[Base], where: Any, **values: Any) -> None:
    """Change stored rows directly, behind the control plane's back."""
    engine = make_engine(cp.settings.state_db_url)
    with engine.begin() as connection:
        connection.execute(update(table).where(where).values(**values))
    engine.dispose()


def divergences(cp: ControlPlane) -> set[tuple[str, str, str, Any, Any]]:
    report = cp.verify_audit()
    assert not report.ok and report.first_error is None  # the chain itself is intact
    return {(d.table, d.row, d.field, d.chain, d.stored) for d in report.divergences}


def test_a_reset_spent_amount_is_named(spent: tuple[ControlPlane, str]) -> None:
    cp, policy_id = spent
    tamper(cp, Policy, Policy.id == policy_id, epsilon_spent=0)
    assert divergences(cp) == {("policies", policy_id, "epsilon_spent", 500_000_000, 0)}


def test_an_un_revoked_policy_is_named(spent: tuple[ControlPlane, str]) -> None:
    cp, policy_id = spent
    cp.revoke_policy(OWNER, policy_id, DATASET, reason="breach")
    tamper(cp, Policy, Policy.id == policy_id, status="active")
    assert divergences(cp) == {("policies", policy_id, "status", "revoked", "active")}


def test_an_altered_grant_and_a_reset_lifetime_account_are_named(spent: tuple[ControlPlane, str]) -> None:
    cp, policy_id = spent
    tamper(cp, Policy, Policy.id == policy_id, epsilon_granted=9_000_000_000)
    tamper(cp, LedgerAccount, LedgerAccount.organisation == "acme", epsilon_spent=0, epsilon_cap=None)
    assert divergences(cp) == {
        ("policies", policy_id, "epsilon_granted", 1_000_000_000, 9_000_000_000),
        ("ledger_accounts", "residents/acme", "epsilon_spent", 500_000_000, 0),
        ("ledger_accounts", "residents/acme", "epsilon_cap", 2_000_000_000, None),
    }


def test_a_role_granted_behind_the_control_planes_back_is_named(spent: tuple[ControlPlane, str]) -> None:
    cp, _ = spent
    tamper(cp, User, User.name == "alice", roles="analyst,operator")
    [found] = cp.verify_audit().divergences
    assert found == StateDivergence(
        table="users", row="alice", field="roles", chain=["analyst"], stored=["analyst", "operator"]
    )


def test_audited_changes_verify(spent: tuple[ControlPlane, str]) -> None:
    cp, policy_id = spent
    cp.amend_policy(OWNER, policy_id, DATASET, epsilon=3.0)
    cp.set_user_roles("alice", ["analyst", "owner"], "acme", actor=OPERATOR)  # type: ignore[list-item]
    cp.disable_user("alice", actor=OPERATOR)
    cp.revoke_policy(OWNER, policy_id, DATASET, reason="done")
    report = cp.verify_audit()
    assert report.ok and report.divergences == ()
