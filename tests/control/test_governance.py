"""Owners and operators' levers: withdrawn, duplicate and expiring requests; disabled users and
changed roles (audited); refusals recorded and rate-limited; sweeps safe from several processes."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta
from pathlib import Path

import pytest
from control_support import ANALYST_A, ANALYST_B, OPERATOR, OWNER, Clock, Granter, make_dataset
from cp_worker import CONTEXT, reserve_and_hang, started, sweep

from sandbox.audit.models import EventType
from sandbox.control import ControlPlane
from sandbox.errors import Conflict, NotFound, Unauthenticated
from sandbox.principals import Role

DATASET = make_dataset()


def ask(cp: ControlPlane, clock: Clock, analyst: object = ANALYST_A) -> str:
    return cp.request_access(
        analyst,  # type: ignore[arg-type]
        DATASET,
        purpose="study",
        columns=["age"],
        epsilon=1.0,
        delta=0.0,
        valid_until=clock.now + timedelta(days=30),
    ).id


def test_a_duplicate_pending_request_is_refused_and_a_pending_one_can_be_withdrawn(
    cp: ControlPlane, clock: Clock
) -> None:
    first = ask(cp, clock)
    with pytest.raises(Conflict) as raised:
        ask(cp, clock)
    assert raised.value.code == "request.duplicate_pending" and first in raised.value.message
    with pytest.raises(NotFound):
        cp.withdraw_request(ANALYST_B, first)  # another organisation cannot see it
    withdrawn = cp.withdraw_request(ANALYST_A, first)
    assert withdrawn.status == "withdrawn"
    with pytest.raises(Conflict):
        cp.withdraw_request(ANALYST_A, first)
    ask(cp, clock)  # a new request may follow
    [event] = cp.audit_events(OPERATOR, type="access.withdrawn")
    assert event.actor == "alice" and event.payload == {"request_id": first}


def test_pending_requests_expire(cp: ControlPlane, clock: Clock) -> None:
    old = ask(cp, clock)
    clock.advance(days=cp.settings.request_ttl_days - 1)
    recent = ask(cp, clock, ANALYST_B)
    clock.advance(days=2)
    assert cp.expire_requests() == 1
    assert cp.expire_requests() == 0
    assert cp.get_request(OPERATOR, old).status == "expired"
    assert cp.get_request(OPERATOR, recent).status == "pending"
    with pytest.raises(Conflict):
        cp.approve(OWNER, old, DATASET, max_epsilon_per_query=0.5)


def test_disabled_users_and_changed_roles_are_audited(cp: ControlPlane) -> None:
    cp.add_user("dora", [Role.ANALYST], "acme", actor=OPERATOR)
    token = cp.issue_token("dora", actor=OPERATOR).token
    assert cp.principal_for_token(token).name == "dora"
    cp.disable_user("dora", actor=OPERATOR)
    with pytest.raises(Unauthenticated):
        cp.principal_for_token(token)
    with pytest.raises(Conflict):
        cp.issue_token("dora", actor=OPERATOR)
    cp.enable_user("dora", actor=OPERATOR)
    changed = cp.set_user_roles("dora", [Role.OWNER], "city_stats", actor=OPERATOR)
    assert changed.roles == frozenset({Role.OWNER}) and cp.principal_for_token(token).has(Role.OWNER)
    [event] = cp.audit_events(OPERATOR, type="user.roles_changed")
    assert event.payload["old"] == {"roles": ["analyst"], "organisation": "acme"}
    assert event.payload["new"] == {"roles": ["owner"], "organisation": "city_stats"}
    assert [e.type for e in cp.audit_events(OPERATOR, actor="olga")][-3:] == [
        "user.disabled",
        "user.enabled",
        "user.roles_changed",
    ]


def test_refusals_are_recorded_and_rate_limited(cp: ControlPlane, clock: Clock) -> None:
    cp.refusals.limit = 3

    def refuse(who: str = "203.0.113.9") -> bool:
        return cp.record_refusal(EventType.AUTH_FAILED, who, "GET /api/v1/budget", "auth.unauthenticated")

    assert [refuse() for _ in range(10)] == [True] * 3 + [False] * 7
    assert refuse("198.51.100.7")  # another caller is not held back by the first one's flood
    assert cp.refusals.counts["auth.failed"] == 11
    clock.advance(seconds=61)
    assert refuse()
    events = cp.audit_events(OPERATOR, type="auth.failed")
    assert [e.payload["suppressed"] for e in events] == [0, 0, 0, 0, 7]
    assert events[-1].actor == "203.0.113.9" and events[-1].payload["action"] == "GET /api/v1/budget"


def test_sweeps_from_several_processes_settle_each_reservation_once(
    cp: ControlPlane, grant: Granter, clock: Clock, db_url: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    clock.now = datetime.now(UTC)
    grant(ANALYST_A, DATASET, epsilon=1.0)
    home = str(tmp_path / "home")
    for _ in range(3):
        parent, child = CONTEXT.Pipe()
        with started(reserve_and_hang, [(db_url, home, 0.1, child)]) as [worker]:
            assert parent.poll(60)
            parent.recv()
            worker.kill()
    results: multiprocessing.Queue[int] = CONTEXT.Queue()
    start = CONTEXT.Barrier(3)
    with started(sweep, [(db_url, home, start, results)] * 3) as sweepers:
        settled = sorted(results.get(timeout=60) for _ in sweepers)
    assert sum(settled) == 3
    [budget] = cp.budget(OPERATOR)
    assert (budget.epsilon_spent, budget.epsilon_reserved, budget.lifetime_epsilon_used) == (0.3, 0.0, 0.3)
    assert cp.verify_audit().ok
