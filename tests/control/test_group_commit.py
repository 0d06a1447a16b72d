"""The query path without a global lock: conditional charges that re-check what was decided on,
replica heartbeats that tell a running query from an abandoned one, and audit events that stay
countable while they wait for the sealer — on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from control_support import ANALYST_A, OPERATOR, OWNER, Clock, Granter, make_dataset, make_summary
from sqlalchemy import event, func, select

from sandbox.control import ControlPlane, QueryTicket
from sandbox.control.charges import PendingCharges, admission_rows
from sandbox.control.ledger import QueryStatus
from sandbox.errors import PolicyDenied
from sandbox.settings import Settings
from sandbox.store.models import PendingEvent

DATASET = make_dataset()
ANSWER = {"columns": ["n"], "rows": [[7.5]]}


class _RolledBack(Exception):
    pass


def applied(cp: ControlPlane, charges: PendingCharges) -> bool:
    """Whether ``charges`` apply on the store now (rolled back either way)."""
    try:
        with cp._store.hot_connection() as connection:
            raise _RolledBack(charges.apply(connection))
    except _RolledBack as outcome:
        return bool(outcome.args[0])


def test_a_policy_changed_after_the_read_is_not_charged(cp: ControlPlane, grant: Granter) -> None:
    policy = grant(ANALYST_A, DATASET, epsilon=1.0)
    first = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.1), sql="q")
    assert isinstance(first, QueryTicket)  # the dataset's ledger and the account exist now
    with cp._store.hot_connection() as connection:
        [read] = admission_rows(connection, {("acme", DATASET.name)}).values()
    cp.amend_policy(OWNER, policy.id, DATASET, max_epsilon_per_query=0.05)  # a new revision
    charges = PendingCharges()
    charges.add(read, 100_000_000, 0)
    assert applied(cp, charges) is False
    [budget] = cp.budget(ANALYST_A)
    assert (budget.epsilon_reserved, budget.epsilon_spent) == (0.1, 0.0)  # only the first query
    # decided again on the amended terms: refused, with the rule
    with pytest.raises(PolicyDenied) as refused:
        cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.1), sql="q")
    assert refused.value.rule == "policy.epsilon_per_query_cap"


@pytest.mark.parametrize(
    "cap",
    [{"organisation": "acme"}, {"per_organisation": True}, {}],
    ids=["organisation", "per-organisation default", "dataset-wide"],
)
def test_a_charge_beyond_a_cap_set_after_the_read_is_refused_by_the_database(
    cp: ControlPlane, grant: Granter, cap: dict[str, Any]
) -> None:
    grant(ANALYST_A, DATASET, epsilon=1.0)
    cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.1), sql="q")
    with cp._store.hot_connection() as connection:
        [read] = admission_rows(connection, {("acme", DATASET.name)}).values()
    cp.set_dataset_cap(OWNER, DATASET, 0.15, None, **cap)
    charges = PendingCharges()
    charges.add(read, 100_000_000, 0)  # 0.1 more: within the grant, beyond the new cap
    assert applied(cp, charges) is False


def test_the_sweep_leaves_a_running_query_of_a_live_replica_alone(settings: Settings) -> None:
    live = settings.model_copy(update={"abandoned_reservation_s": 0.8})  # heartbeat every 0.2 s
    running, sweeper = ControlPlane(live, create=True), ControlPlane(live)
    age = timedelta(seconds=1.2)  # a heartbeat may come a second late under load
    try:
        Granter(running, Clock(datetime.now(UTC)))(ANALYST_A, DATASET, epsilon=1.0)
        ticket = running.begin_query(ANALYST_A, DATASET, make_summary(DATASET), sql="q")
        assert isinstance(ticket, QueryTicket)
        time.sleep(1.6)  # older than the sweep's age: only the heartbeat says it is running
        assert sweeper.settle_abandoned(age) == 0
        running.complete_query(ticket, ANSWER)  # it finishes late, and is answered
        assert sweeper.get_query(OPERATOR, ticket.query_id).status == QueryStatus.ANSWERED
        stuck = running.begin_query(ANALYST_A, DATASET, make_summary(DATASET), sql="q")
        assert isinstance(stuck, QueryTicket)
        time.sleep(2.6)  # twice the age: a live replica's query that old lost its closing
        assert sweeper.settle_abandoned(age) == 1
        late = running.begin_query(ANALYST_A, DATASET, make_summary(DATASET), sql="q")
        assert isinstance(late, QueryTicket)
        running.close()  # its replica is gone: what it left running is abandoned
        time.sleep(1.4)
        assert sweeper.settle_abandoned(age) == 1
        for query_id in (stuck.query_id, late.query_id):
            closed = sweeper.get_query(OPERATOR, query_id)
            assert (closed.status, closed.error_code) == (QueryStatus.FAILED, "query.abandoned")
        assert sweeper.verify_audit().ok
    finally:
        running.close()
        sweeper.close()


def test_verification_holds_while_queries_commit(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=100.0, max_epsilon_per_query=0.01)
    stop = threading.Event()

    def spend(_: int) -> int:
        answered = 0
        while not stop.is_set():
            ticket = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.001), sql="q")
            assert isinstance(ticket, QueryTicket)
            cp.complete_query(ticket, ANSWER)
            answered += 1
        return answered

    with ThreadPoolExecutor(6) as pool:
        spenders = [pool.submit(spend, n) for n in range(6)]
        reports = []
        for _ in range(4):
            time.sleep(0.2)
            reports.append(cp.verify_audit())  # events still pending count in the state proof
        stop.set()
        answered = sum(s.result() for s in spenders)
    assert answered > 0
    assert all(r.ok and not r.divergences for r in reports), [r for r in reports if not r.ok]
    cp.seal_pending()
    with cp._store.read() as session:
        assert session.scalar(select(func.count()).select_from(PendingEvent)) == 0
    events = cp.audit_events(OPERATOR, type="query.answered", limit=10_000)
    assert len(events) == answered
    [budget] = cp.budget(ANALYST_A)
    assert budget.epsilon_spent == pytest.approx(answered * 0.001, abs=1e-9)


def test_the_analysts_join_bound_is_on_the_record(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=1.0)
    bounded = replace(make_summary(DATASET), max_joined_rows_per_unit=2)
    for summary in (bounded, make_summary(DATASET)):
        ticket = cp.begin_query(ANALYST_A, DATASET, summary, sql="q")
        assert isinstance(ticket, QueryTicket)
    events = cp.audit_events(OPERATOR, type="query.reserved")
    assert [e.payload.get("max_joined_rows_per_unit") for e in events] == [2, None]
    assert "max_joined_rows_per_unit" not in events[1].payload  # payloads without it stay as they were


def test_events_are_sealed_without_a_reader(cp: ControlPlane, grant: Granter) -> None:
    grant(ANALYST_A, DATASET, epsilon=1.0)
    ticket = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET), sql="q")
    assert isinstance(ticket, QueryTicket)
    cp.complete_query(ticket, ANSWER)
    deadline = time.monotonic() + 10
    pending = -1
    while time.monotonic() < deadline and pending != 0:
        with cp._store.read() as session:
            pending = session.scalar(select(func.count()).select_from(PendingEvent)) or 0
        time.sleep(0.05)
    assert pending == 0  # the sealer thread linked them (on SQLite, the query's own transaction)


def test_a_charge_is_flushed_to_disk_and_a_closing_is_not(cp: ControlPlane, grant: Granter) -> None:
    """What each query-path commit waits for: SQLite's ``synchronous`` (2 FULL, 1 NORMAL) or
    PostgreSQL's ``synchronous_commit``, read inside the transaction right before it commits."""
    grant(ANALYST_A, DATASET, epsilon=1.0)
    if not cp._store.is_sqlite:  # the test databases default to off (speed): back to the server's own
        cp._store.engine.dispose()
        event.listen(
            cp._store.engine, "connect", lambda dbapi, _record: dbapi.execute("SET synchronous_commit = on")
        )
    levels: list[str] = []
    caller = threading.get_ident()  # not the sealer's or the heartbeat's commits

    def record(connection: Any) -> None:
        if threading.get_ident() != caller:
            return
        cursor = connection.connection.driver_connection.cursor()
        cursor.execute("PRAGMA synchronous" if cp._store.is_sqlite else "SHOW synchronous_commit")
        levels.append(str(cursor.fetchone()[0]))

    event.listen(cp._store.engine, "commit", record)
    ticket = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.1), sql="q")
    assert isinstance(ticket, QueryTicket)
    charged = levels[-1]
    cp.complete_query(ticket, ANSWER)
    closed = levels[-1]
    second = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.1, sql="SELECT 2"), sql="q")
    assert isinstance(second, QueryTicket)
    charged_again = levels[-1]
    event.remove(cp._store.engine, "commit", record)
    flushed, relaxed = ("2", "1") if cp._store.is_sqlite else ("on", "off")
    assert (charged, closed, charged_again) == (flushed, relaxed, flushed)  # the setting does not leak
    assert [q.status for q in cp.list_queries(OPERATOR)].count(QueryStatus.ANSWERED) == 1


def test_an_idle_process_commits_in_the_callers_thread(cp: ControlPlane, grant: Granter) -> None:
    """The admission's and the closing's transactions (those writing ``queries``) commit in the
    thread that asked for them: no hand-off to a writer thread when no batch is in flight."""
    grant(ANALYST_A, DATASET, epsilon=1.0)
    committers: list[str] = []

    def mark(connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT INTO QUERIES", "UPDATE QUERIES")):
            connection.info["writes_queries"] = True

    def record(connection: Any) -> None:
        if connection.info.pop("writes_queries", False):
            committers.append(threading.current_thread().name)

    event.listen(cp._store.engine, "before_cursor_execute", mark)
    event.listen(cp._store.engine, "commit", record)
    ticket = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=0.1), sql="q")
    assert isinstance(ticket, QueryTicket)
    cp.complete_query(ticket, ANSWER)
    assert committers == [threading.current_thread().name] * 2
