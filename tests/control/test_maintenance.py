"""The gateway's periodic upkeep: expiry of policies past valid_until, settling of dead reservations."""

from __future__ import annotations

from control_support import ANALYST_A, OPERATOR, Clock, Granter, make_dataset, make_summary

from sandbox.api.maintenance import run_once
from sandbox.control import ControlPlane, QueryTicket
from sandbox.settings import Settings

DATASET = make_dataset()


def test_run_once_expires_policies_and_settles_abandoned_reservations(
    cp: ControlPlane, grant: Granter, clock: Clock, settings: Settings
) -> None:
    grant(ANALYST_A, DATASET, epsilon=1.0, days=1)
    ticket = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.25), sql="q")
    assert isinstance(ticket, QueryTicket)
    assert run_once(cp, settings) == (0, 0)

    clock.advance(days=2)
    assert run_once(cp, settings) == (1, 1)
    [budget] = cp.budget(ANALYST_A)
    assert (budget.status, budget.epsilon_reserved, budget.epsilon_spent) == ("expired", 0.0, 0.25)
    types = [e.type for e in cp.audit_events(OPERATOR)]
    assert "policy.expired" in types and "query.failed" in types
    assert run_once(cp, settings) == (0, 0)
    assert cp.verify_audit().ok
