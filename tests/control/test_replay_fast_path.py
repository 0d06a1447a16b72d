"""The replay fast path: the per-process memo of stored releases saves reads, never a revocation
check or the audit event."""

from __future__ import annotations

import pytest
from control_support import ANALYST_A, OPERATOR, OWNER, Granter, make_dataset, make_summary

from sandbox.control import CachedAnswer, ControlPlane, QueryTicket
from sandbox.errors import PolicyDenied

DATASET = make_dataset()
ANSWER = {"columns": ["n"], "rows": [[41.7]]}


def test_memoised_replay_with_a_stale_policy_is_refused_after_revocation(
    cp: ControlPlane, grant: Granter
) -> None:
    granted = grant(ANALYST_A, DATASET, epsilon=1.0)
    summary = make_summary(DATASET, sql="SELECT COUNT(*) FROM people", epsilon=0.25)
    ticket = cp.begin_query(ANALYST_A, DATASET, summary, sql="q")
    assert isinstance(ticket, QueryTicket)
    cp.complete_query(ticket, ANSWER)
    for _ in range(2):  # the second replay is answered from the memo
        replay = cp.begin_query(ANALYST_A, DATASET, summary, sql="q")
        assert isinstance(replay, CachedAnswer)
        assert (replay.answer, replay.replay_of, replay.epsilon_remaining) == (ANSWER, ticket.query_id, 0.75)
    cp.revoke_policy(OWNER, granted.id, DATASET, reason="audit finding")
    with pytest.raises(PolicyDenied) as raised:
        cp.begin_query(ANALYST_A, DATASET, summary, sql="q")
    assert raised.value.rule == "policy.revoked"
    types = [e.type for e in cp.audit_events(OPERATOR) if e.type.startswith("query.")]
    assert types == ["query.reserved", "query.answered", "query.replayed", "query.replayed", "query.rejected"]
    assert cp.verify_audit().ok
