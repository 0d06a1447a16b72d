"""Use case: admitting a query. One admission step: look up a stored release; then decide once on
what was read, and replay, charge or record the denial, in one write transaction with its audit
event.

The common case takes no lock other queries wait on, and shares its transaction with the other
admissions and closings of the same moment (``sandbox.control.batching``): one unlocked read of
the policies, ledgers and accounts involved, the pure policy engine's decision for each query in
turn, and conditional charges that re-check every limit in the database
(``sandbox.control.charges``); the events are deferred to the sealer. Anything else — a denial, an
expired policy, a missing account, a row changed since the read — is decided again in a
governance write transaction with the rows locked.

The charge is made here, before any data is read, on three accounts at once (the policy, the
organisation's lifetime account, the dataset's ledger), and is never refunded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection
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
from sandbox.control.batching import Job
from sandbox.control.charges import Changed, PendingCharges, admission_rows, charge_locked
from sandbox.control.ledger import (
    CachedAnswer,
    QueryStatus,
    QueryTicket,
    budget_state,
    own_budget_state,
)
from sandbox.control.records import Attempt, Writes
from sandbox.control.replays import (
    ReplayMemo,
    StoredRelease,
    find_replay,
    find_replays,
    replayed_answer,
)
from sandbox.errors import InternalError, PolicyDenied
from sandbox.policies import workflow
from sandbox.policies.engine import check_access, decide
from sandbox.policies.models import PolicyView
from sandbox.principals import Principal
from sandbox.query.summary import QuerySummary

REPLAY_MEMO_SIZE = 4096  # stored releases memoised per process (answers are small JSON documents)
VIEW_MEMO_SIZE = 1024  # policy views memoised per process, by (id, revision)


class AdmitJob(Job):
    """One admission in a batch; ``result`` ``None``: decide again on locked rows."""

    result: QueryTicket | CachedAnswer | None

    def __init__(self, attempt: Attempt, release: StoredRelease | None) -> None:
        super().__init__()
        self.attempt = attempt
        self.release = release


class Admission(Core):
    """Deciding, charging and replaying queries."""

    _releases: ReplayMemo
    _views: dict[tuple[str, int], PolicyView]

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
        now, holder = self._now(), self._upkeep.replica_id
        if principal.organisation:
            attempt = Attempt(principal, dataset, summary, sql, now, holder)
            job = AdmitJob(attempt, self._releases.get(attempt.release_key))
            try:
                self._writes.submit(job)
                admitted = job.result
            except Changed:
                admitted = None
            if admitted is not None:
                return admitted
        attempt = Attempt(principal, dataset, summary, sql, now, holder)
        release = self._stored_release(attempt)
        outcome: QueryTicket | CachedAnswer | PolicyDenied
        with self._store.write_transaction() as session:
            if principal.organisation:
                row = workflow.current_policy(session, principal.organisation, dataset.name, lock=True)
                if row is not None:
                    workflow.notice_expiry(session, row, attempt.now)
                attempt.policy = row
            writes = Writes()
            outcome = self._admit_locked(session, attempt, release, writes)
            writes.flush(session, deferred=False)
        if isinstance(outcome, PolicyDenied):
            raise outcome
        return outcome

    def _admit_batch(
        self, connection: Connection, jobs: Sequence[AdmitJob], events: list[dict[str, Any]]
    ) -> None:
        """Decide every admission of a batch on one unlocked read and charge them together, and
        defer their events with ``events`` (the batch's others); ``Changed`` if a row changed
        since the read (the batch is rolled back)."""
        if not jobs:
            chain.defer(connection, events)
            return
        reads = admission_rows(connection, {job.attempt.release_key[:2] for job in jobs})
        unknown = [job.attempt.release_key for job in jobs if job.release is None]
        releases = find_replays(connection, unknown)
        for key, release in releases.items():
            self._releases.put(key, release)
        charges, writes = PendingCharges(), Writes()
        for job in jobs:
            attempt = job.attempt
            read = reads.get(attempt.release_key[:2])
            job.result = None
            if read is None or workflow.is_past_due(read.row, attempt.now):
                continue
            attempt.policy, attempt.ledger_id = read.row, read.ledger_id
            view = self._view_of(read.row)
            state = charges.state(read)
            found = job.release or releases.get(attempt.release_key)
            if found is not None and self._replay_allowed(attempt, view, budget_state(read.row)):
                job.result = self._record_replay(writes, attempt, found, view, state)
            elif decide(
                attempt.principal, attempt.dataset, view, attempt.summary, state, attempt.now
            ).allowed:
                charges.add(read, *_units(attempt.summary))
                job.result = self._record_charge(writes, attempt, view, state)
        writes.flush(connection, deferred=True, events=events)
        if not charges.apply(connection):
            raise Changed

    def _admit_locked(
        self, session: Session, attempt: Attempt, release: StoredRelease | None, writes: Writes
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
            return self._record_replay(writes, attempt, release, view, state)
        state = BudgetState(0, 0, 0, 0)
        if policy is not None and attempt.principal.organisation:
            attempt.ledger_id = dataset_row(session, attempt.dataset).ledger_id
            ledger = ledger_row(session, attempt.ledger_id)
            account = account_row(session, attempt.ledger_id, attempt.principal.organisation)
            state = budget_state(policy, ledger, account)
        decision = decide(attempt.principal, attempt.dataset, view, summary, state, attempt.now)
        if not decision.allowed or policy is None or view is None or attempt.ledger_id is None:
            return self._deny(writes, attempt, decision.error())
        charge_locked(session, policy, attempt.ledger_id, *_units(summary))
        return self._record_charge(writes, attempt, view, state)

    @staticmethod
    def _replay_allowed(attempt: Attempt, view: PolicyView, state: BudgetState) -> bool:
        """Whether the policy still allows the query (a replay costs nothing, so budget is moot)."""
        return decide(
            attempt.principal, attempt.dataset, view, attempt.summary, state, attempt.now, charge=False
        ).allowed

    @staticmethod
    def _record_charge(writes: Writes, attempt: Attempt, view: PolicyView, state: BudgetState) -> QueryTicket:
        """Record the charged query (``query.reserved``) and return its ticket."""
        summary = attempt.summary
        epsilon, delta = _units(summary)
        query_id = writes.query(attempt, QueryStatus.RESERVED, epsilon=epsilon, delta=delta)
        writes.event(
            attempt,
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
            **(
                {}
                if summary.max_joined_rows_per_unit is None
                else {"max_joined_rows_per_unit": summary.max_joined_rows_per_unit}
            ),
        )
        return QueryTicket(
            query_id=query_id,
            principal=attempt.principal.name,
            dataset=attempt.dataset.name,
            dataset_version=summary.dataset_version,
            fingerprint=summary.fingerprint,
            epsilon_units=epsilon,
            delta_units=delta,
            policy=view,
            epsilon=epsilon_float(epsilon),
            delta=delta_float(delta),
            epsilon_remaining=epsilon_float(state.epsilon_remaining - epsilon),
            delta_remaining=delta_float(state.delta_remaining - delta),
        )

    def _view_of(self, row: Any) -> PolicyView:
        """The view of a policy row, memoised by (id, revision): any change to a policy's terms or
        status moves its revision."""
        key = (row.id, row.revision)
        view = self._views.get(key)
        if view is None:
            if len(self._views) >= VIEW_MEMO_SIZE:
                self._views.clear()
            view = self._views[key] = workflow.policy_view(row)
        return view

    def _stored_release(self, attempt: Attempt) -> StoredRelease | None:
        """The stored release of an identical query by the attempt's organisation (memoised), if any."""
        if not attempt.principal.organisation:
            return None
        key = attempt.release_key
        entry = self._releases.get(key)
        if entry is None:
            with self._store.connect() as connection:
                entry = find_replay(connection, key)
            if entry is not None:
                self._releases.put(key, entry)
        return entry

    @staticmethod
    def _record_replay(
        writes: Writes, attempt: Attempt, entry: StoredRelease, view: PolicyView, state: BudgetState
    ) -> CachedAnswer:
        """Record a replayed release (no charge) and return the stored answer."""
        query_id = writes.query(
            attempt, QueryStatus.REPLAYED, replay_of=entry.query_id, finished_at=attempt.now
        )
        writes.event(
            attempt,
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

    @staticmethod
    def _deny(writes: Writes, attempt: Attempt, error: PolicyDenied) -> PolicyDenied:
        """Record a denied query (no charge) and return its error, carrying the query id."""
        query_id = writes.query(
            attempt, QueryStatus.REJECTED, rule=error.rule, error_code=error.code, finished_at=attempt.now
        )
        writes.event(
            attempt,
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


def _units(summary: QuerySummary) -> tuple[int, int]:
    """The query's charge in exact units (rounded up)."""
    return epsilon_units(summary.epsilon, up=True), delta_units(summary.delta, up=True)
