"""A process killed between reservation and release: the charge is kept, the chain verifies."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest
from control_support import ANALYST_A, OPERATOR, Clock, Granter, make_dataset, make_summary
from cp_worker import CONTEXT, attempt, reserve_and_hang, started

from sandbox.control import ControlPlane
from sandbox.control.ledger import QueryStatus
from sandbox.errors import BudgetExhausted
from sandbox.settings import Settings

DATASET = make_dataset()


def test_kill_after_reservation_keeps_the_charge(
    cp: ControlPlane, clock: Clock, grant: Granter, settings: Settings, db_url: str
) -> None:
    clock.now = datetime.now(UTC)
    grant(ANALYST_A, DATASET, epsilon=1.0)
    receiver, sender = CONTEXT.Pipe(duplex=False)
    with started(reserve_and_hang, [(db_url, str(settings.home), 0.6, sender)]) as [worker]:
        assert receiver.poll(60)
        query_id = receiver.recv()
        assert query_id.startswith("q_")
        worker.kill()
        worker.join(timeout=30)
    assert worker.exitcode == -signal.SIGKILL  # killed, not exited
    cp.close()

    restarted = ControlPlane(settings, clock=clock)
    try:
        [budget] = restarted.budget(ANALYST_A)
        assert (budget.epsilon_reserved, budget.epsilon_spent, budget.epsilon_remaining) == (0.6, 0.0, 0.4)
        assert restarted.get_query(ANALYST_A, query_id).status == QueryStatus.RESERVED
        report = restarted.verify_audit()
        assert report.ok and report.first_error is None
        assert restarted.audit_events(OPERATOR)[-1].type == "query.reserved"
        # the kept reservation still bounds what can be spent
        with pytest.raises(BudgetExhausted):
            restarted.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.5), sql="q")
        assert attempt(restarted, 0.4) == "answered"
        # the operator settles the dead reservation: it becomes a charge, never a refund
        clock.advance(hours=1)
        assert restarted.settle_abandoned(timedelta(minutes=30)) == 1
        [budget] = restarted.budget(ANALYST_A)
        assert (budget.epsilon_reserved, budget.epsilon_spent, budget.epsilon_remaining) == (0.0, 1.0, 0.0)
        assert restarted.get_query(ANALYST_A, query_id).status == QueryStatus.FAILED
        assert restarted.verify_audit().ok
    finally:
        restarted.close()
