"""Use case: admitting a query. One admission step: look up a stored release first; then decide
once on what was read, and replay, charge or record the denial, in one write transaction with its
audit event.

The common case takes no lock that other queries wait on: one unlocked read of the policy, the
ledger and the account, the pure policy engine's decision, and conditional charges that re-check
every limit in the database (``sandbox.control.charges``); its events are deferred to the sealer.
Anything else — a denial, an expired policy, a missing account, a row changed since the read —
is decided again in a governance write transaction with the rows locked.

The charge is made here, before any data is read, on three accounts at once (the policy, the
organisation's lifetime account, the dataset's ledger), and is never refunded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from sandbox.audit import chain
from sandbox.audit.models import EventType
from sandbox.budget import (
    BudgetState,
    delta_float,
    delta_text,
    delta_units,
    epsilon_float,
    epsilon_text,
    epsilon_units,
)
from sandbox.catalog.models import DatasetRecord
from sandbox.control.base import Core, account_row, dataset_row, ledger_row
from sandbox.control.charges import admission_row, charge_if_unchanged, charge_locked
from sandbox.control.ledger import (
    CachedAnswer,
    QueryStatus,
    QueryTicket,
    budget_state,
    insert_query,
    own_budget_state,
)
from sandbox.control.replays import ReplayMemo, StoredRelease, find_replay, replayed_answer
from sandbox.errors import InternalError, PolicyDenied
from sandbox.policies import workflow
from sandbox.policies.engine import check_access, decide
from sandbox.policies.models import PolicyView
from sandbox.principals import Principal
from sandbox.query.summary import QuerySummary
from sandbox.store.db import Runner
from sandbox.store.models import Policy

REPLAY_MEMO_SIZE = 4096  # stored releases memoised per process (answers are small JSON documents)
ReleaseKey = tuple[str, str, str, str]


class _Changed(Exception):
    """A row the unlocked decision read changed before the charge: decide again, locked."""


@dataclass
class _Attempt:
    """One query attempt inside ``begin_query``'s write transaction."""

    principal: Principal
    dataset: DatasetRecord
    summary: QuerySummary
    sql: str
    now: datetime
    holder: str
    policy: Policy | Any | None = None
    ledger_id: str | None = None
    deferred: bool = False  # events go to the sealer (no chain-head lock held)

    def record(self, session: Runner, type: EventType, **payload: Any) -> None:
        """Write the attempt's audit event."""
        write = chain.defer if self.deferred else chain.append
        write(
            session,
            type,
            actor=self.principal,
            now=self.now,
            organisation=self.principal.organisation,
            dataset=self.dataset.name,
            payload=payload,
        )


class Admission(Core):
    """Deciding, reserving, replaying and charging queries."""

    _releases: ReplayMemo

    def active_policy(self, principal: Principal, dataset: DatasetRecord) -> PolicyView:
        """The organisation's usable policy on the dataset (read before planning: it sets the
        minimum group size); ``PolicyDenied`` with the rule otherwise."""
        now = self._now()
        view: PolicyView | None = None
        if principal.organisation:
            with self._store.connect() as connection:
                found = workflow.current_policy_row(connection, principal.organisation, dataset.name)
            view = workflow.policy_view(found) if found is not None else None
            if found is not None and workflow.is_past_due(found, now):
                with self._store.write_transaction() as session:
                    row = workflow.current_policy(session, principal.organisation, dataset.name, lock=True)
                    if row is not None:
                        workflow.notice_expiry(session, row, now)
                        view = workflow.policy_view(row)
        decision = check_access(principal, dataset, view, now)
        if not decision.allowed or view is None:
            raise decision.error()
        return view

    def begin_query(
        self,
        principal: Principal,
        dataset: DatasetRecord,
        summary: QuerySummary,
        *,
        sql: str,
    ) -> QueryTicket | CachedAnswer:
        """The admission step: replay, or decide and charge, atomically.

        Returns a ``CachedAnswer`` for an identical earlier release by the same organisation
        (``query.replayed``, no cost), else a ``QueryTicket`` with the budget charged
        (``query.reserved``: the query may now read data). A denial records ``query.rejected``
        and raises ``PolicyDenied`` / ``BudgetExhausted`` with the rule id (and
        ``details['query_id']``).
        """
        if summary.dataset != dataset.name:
            raise InternalError("the query summary is for another dataset")
        attempt = _Attempt(principal, dataset, summary, sql, self._now(), self._upkeep.replica_id)
        release = self._stored_release(attempt)
        if principal.organisation:
            try:
                with self._hot() as connection:
                    return self._admit_unlocked(connection, attempt, release)
            except _Changed:
                attempt = _Attempt(principal, dataset, summary, sql, attempt.now, attempt.holder)
        outcome: QueryTicket | CachedAnswer | PolicyDenied
        with self._store.write_transaction() as session:
            if principal.organisation:
                row = workflow.current_policy(session, principal.organisation, dataset.name, lock=True)
                if row is not None:
                    workflow.notice_expiry(session, row, attempt.now)
                attempt.policy = row
            outcome = self._admit_locked(session, attempt, release)
        if isinstance(outcome, PolicyDenied):
            raise outcome
        return outcome

    def _admit_unlocked(
        self, connection: Runner, attempt: _Attempt, release: StoredRelease | None
    ) -> QueryTicket | CachedAnswer:
        """Replay or charge on one unlocked read; ``_Changed`` when the locked path must decide."""
        read = admission_row(connection, attempt.principal.organisation or "", attempt.dataset.name)
        if read is None or workflow.is_past_due(read.row, attempt.now):
            raise _Changed
        attempt.policy, attempt.ledger_id, attempt.deferred = read.row, read.ledger_id, True
        view = workflow.policy_view(read.row)
        if release is not None and self._replay_allowed(attempt, view, budget_state(read.row)):
            return self._record_replay(connection, attempt, release, view, read.state)
        if not decide(
            attempt.principal, attempt.dataset, view, attempt.summary, read.state, attempt.now
        ).allowed:
            raise _Changed
        ticket = self._record_charge(connection, attempt, view, read.state)
        if not charge_if_unchanged(connection, read, *_units(attempt.summary)):
            raise _Changed
        return ticket

    def _admit_locked(
        self, session: Session, attempt: _Attempt, release: StoredRelease | None
    ) -> QueryTicket | CachedAnswer | PolicyDenied:
        """Decide once on the locked rows: replay (free), charge, or record the denial."""
        policy, summary = attempt.policy, attempt.summary
        view = workflow.policy_view(policy) if policy is not None else None
        if (
            release is not None
            and policy is not None
            and view is not None
            and self._replay_allowed(attempt, view, budget_state(policy))
        ):
            state = own_budget_state(session, policy, attempt.dataset.name)
            return self._record_replay(session, attempt, release, view, state)
        state = BudgetState(0, 0, 0, 0)
        if policy is not None and attempt.principal.organisation:
            attempt.ledger_id = dataset_row(session, attempt.dataset).ledger_id
            ledger = ledger_row(session, attempt.ledger_id)
            account = account_row(session, attempt.ledger_id, attempt.principal.organisation)
            state = budget_state(policy, ledger, account)
        decision = decide(attempt.principal, attempt.dataset, view, summary, state, attempt.now)
        if not decision.allowed or policy is None or view is None or attempt.ledger_id is None:
            return self._deny(session, attempt, decision.error())
        charge_locked(session, policy, attempt.ledger_id, *_units(summary))
        return self._record_charge(session, attempt, view, state)

    @staticmethod
    def _replay_allowed(attempt: _Attempt, view: PolicyView, state: BudgetState) -> bool:
        """Whether the policy still allows the query (a replay costs nothing, so budget is moot)."""
        return decide(
            attempt.principal, attempt.dataset, view, attempt.summary, state, attempt.now, charge=False
        ).allowed

    def _record_charge(
        self, session: Runner, attempt: _Attempt, view: PolicyView, state: BudgetState
    ) -> QueryTicket:
        """Record the charged query (``query.reserved``) and its ticket."""
        summary = attempt.summary
        epsilon, delta = _units(summary)
        query_id = self._new_query(session, attempt, QueryStatus.RESERVED, epsilon=epsilon, delta=delta)
        attempt.record(
            session,
            EventType.QUERY_RESERVED,
            query_id=query_id,
            policy_id=view.id,
            ledger=attempt.ledger_id,
            sql=attempt.sql,
            fingerprint=summary.fingerprint,
            dataset_version=summary.dataset_version,
            table=summary.table,
            columns=sorted(summary.columns),
            aggregates=sorted(a.value for a in summary.aggregates),
            group_by=list(summary.group_by),
            epsilon=epsilon_text(epsilon),
            delta=delta_text(delta),
        )
        return QueryTicket(
            query_id=query_id,
            policy=view,
            epsilon=epsilon_float(epsilon),
            delta=delta_float(delta),
            epsilon_remaining=epsilon_float(state.epsilon_remaining - epsilon),
            delta_remaining=delta_float(state.delta_remaining - delta),
        )

    @staticmethod
    def _release_key(attempt: _Attempt) -> ReleaseKey:
        summary = attempt.summary
        organisation = attempt.principal.organisation or ""
        return (organisation, attempt.dataset.name, summary.dataset_version, summary.fingerprint)

    def _stored_release(self, attempt: _Attempt) -> StoredRelease | None:
        """The stored release of an identical query by the attempt's organisation (memoised), if any."""
        if not attempt.principal.organisation:
            return None
        key = self._release_key(attempt)
        entry = self._releases.get(key)
        if entry is None:
            with self._store.connect() as connection:
                entry = find_replay(connection, *key)
            if entry is not None:
                self._releases.put(key, entry)
        return entry

    def _record_replay(
        self, session: Runner, attempt: _Attempt, entry: StoredRelease, view: PolicyView, state: BudgetState
    ) -> CachedAnswer:
        """Record a replayed release (no charge) and return the stored answer."""
        query_id = self._new_query(
            session, attempt, QueryStatus.REPLAYED, replay_of=entry.query_id, finished_at=attempt.now
        )
        attempt.record(
            session,
            EventType.QUERY_REPLAYED,
            query_id=query_id,
            replay_of=entry.query_id,
            policy_id=view.id,
            sql=attempt.sql,
            fingerprint=attempt.summary.fingerprint,
            dataset_version=attempt.summary.dataset_version,
        )
        return CachedAnswer(
            query_id=query_id,
            replay_of=entry.query_id,
            answer=replayed_answer(entry),
            policy=view,
            epsilon_remaining=epsilon_float(state.epsilon_remaining),
            delta_remaining=delta_float(state.delta_remaining),
        )

    def _deny(self, session: Session, attempt: _Attempt, error: PolicyDenied) -> PolicyDenied:
        """Record a denied query (no charge) and return its error, carrying the query id."""
        query_id = self._new_query(
            session,
            attempt,
            QueryStatus.REJECTED,
            rule=error.rule,
            error_code=error.code,
            finished_at=attempt.now,
        )
        attempt.record(
            session,
            EventType.QUERY_REJECTED,
            query_id=query_id,
            sql=attempt.sql,
            fingerprint=attempt.summary.fingerprint,
            epsilon_requested=epsilon_text(epsilon_units(attempt.summary.epsilon, up=True)),
            delta_requested=delta_text(delta_units(attempt.summary.delta, up=True)),
            rule=error.rule,
            message=error.message,
        )
        error.details["query_id"] = query_id
        return error

    def _new_query(self, session: Runner, attempt: _Attempt, status: QueryStatus, **fields: Any) -> str:
        """Insert the attempt's query record (one statement, no ORM flush); its id."""
        query_id = workflow.new_id("q")
        values: dict[str, Any] = {
            "id": query_id,
            "principal": attempt.principal.name,
            "organisation": attempt.principal.organisation,
            "dataset": attempt.dataset.name,
            "dataset_owner": attempt.dataset.metadata.owner,
            "dataset_version": attempt.summary.dataset_version,
            "ledger_id": attempt.ledger_id,
            "policy_id": attempt.policy.id if attempt.policy is not None else None,
            "sql": attempt.sql,
            "normalized_sql": attempt.summary.normalized_sql,
            "fingerprint": attempt.summary.fingerprint,
            "epsilon": 0,
            "delta": 0,
            "status": status.value,
            "created_at": attempt.now,
            "holder": attempt.holder,
        }
        insert_query(session, {**values, **fields})
        return query_id


def _units(summary: QuerySummary) -> tuple[int, int]:
    """The query's charge in exact units (rounded up)."""
    return epsilon_units(summary.epsilon, up=True), delta_units(summary.delta, up=True)
