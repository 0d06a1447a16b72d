"""Concurrency can never overspend: 50 concurrent queries against a budget that affords 10, from
threads of one process and from several OS processes, on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
from control_support import ANALYST_A, OPERATOR, Clock, Granter, make_dataset
from cp_worker import CONTEXT, attempt, run_queries, started

from sandbox.control import ControlPlane
from sandbox.control.ledger import QueryStatus

DATASET = make_dataset()
ATTEMPTS, AFFORDABLE, EPSILON = 50, 10, 0.1


def check_ledger(cp: ControlPlane, outcomes: list[str]) -> None:
    """Exactly ``AFFORDABLE`` answered, the rest refused for budget; ledger = sum of released costs."""
    assert Counter(outcomes) == {"answered": AFFORDABLE, "budget.epsilon_exhausted": ATTEMPTS - AFFORDABLE}
    [budget] = cp.budget(ANALYST_A)
    answered = [q for q in cp.list_queries(OPERATOR, limit=1000) if q.status == QueryStatus.ANSWERED]
    assert len(answered) == AFFORDABLE
    assert budget.epsilon_spent == pytest.approx(sum(q.epsilon for q in answered), abs=1e-12)
    assert (budget.epsilon_spent, budget.epsilon_reserved, budget.epsilon_remaining) == (1.0, 0.0, 0.0)
    usage = cp.usage(OPERATOR).rows[0]
    assert (usage.queries_answered, usage.queries_rejected, usage.epsilon_spent) == (10, 40, 1.0)
    report = cp.verify_audit()
    assert report.ok, report.first_error
    assert len(cp.audit_events(OPERATOR, type="query.answered")) == AFFORDABLE


@pytest.fixture
def funded(cp: ControlPlane, clock: Clock, grant: Granter) -> ControlPlane:
    """A policy of acme on ``residents`` affording exactly ten queries of epsilon 0.1 (real time)."""
    clock.now = datetime.now(UTC)
    grant(ANALYST_A, DATASET, epsilon=AFFORDABLE * EPSILON, max_epsilon_per_query=EPSILON)
    return cp


def test_threads_never_overspend(funded: ControlPlane) -> None:
    start = threading.Barrier(ATTEMPTS)

    def one(_: int) -> str:
        start.wait()
        return attempt(funded, EPSILON)

    with ThreadPoolExecutor(ATTEMPTS) as pool:
        outcomes = list(pool.map(one, range(ATTEMPTS)))
    check_ledger(funded, outcomes)


def test_processes_never_overspend(funded: ControlPlane, db_url: str, tmp_path: Path) -> None:
    counts = [17, 17, 16]  # three processes, fifty attempts
    start = CONTEXT.Barrier(len(counts))
    results: multiprocessing.Queue[list[str]] = CONTEXT.Queue()
    home = str(tmp_path / "home")
    with started(run_queries, [(db_url, home, n, EPSILON, start, results) for n in counts]) as workers:
        outcomes = [outcome for _ in workers for outcome in results.get(timeout=120)]
        for worker in workers:
            worker.join(timeout=30)
            assert worker.exitcode == 0
    check_ledger(funded, outcomes)
