"""Use case: admitting a query. One admission step: look up a stored release first; then, in one
write transaction, read the policy and the budget once, decide once, and replay, reserve or
record the denial. Then the charge (answered or failed), abandoned reservations and refusals
before planning.

Budget is reserved before any data is read and charged to three accounts at once (the policy,
the organisation's lifetime account, the dataset's ledger); a reservation is never refunded once
data has been read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, select
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
from sandbox.control.ledger import (
    CachedAnswer,
    QueryStatus,
    QueryTicket,
    ReplayMemo,
    StoredRelease,
    budget_state,
    find_replay,
    finish_query,
    insert_query,
    own_budget_state,
    query_record,
    replayed_answer,
    reserve,
    result_shape,
    settle,
    store_replay,
)
from sandbox.errors import Conflict, InternalError, NotFound, PolicyDenied, SandboxError
from sandbox.policies import workflow
from sandbox.policies.engine import check_access, decide
from sandbox.policies.models import PolicyView
from sandbox.principals import Principal
from sandbox.query.summary import QuerySummary
from sandbox.store.db import Runner
from sandbox.store.models import Dataset, Policy, Query

REPLAY_MEMO_SIZE = 4096  # stored releases memoised per process (answers are small JSON documents)
ReleaseKey = tuple[str, str, str, str]


@dataclass
class _Attempt:
    """One query attempt inside ``begin_query``'s write transaction."""

    principal: Principal
    dataset: DatasetRecord
    summary: QuerySummary
    sql: str
    now: datetime
    policy: Policy | None = None
    ledger_id: str | None = None

    def record(self, session: Runner, type: EventType, **payload: Any) -> None:
        """Append the attempt's audit event."""
        chain.append(
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
        """The admission step: replay, or decide and reserve, atomically.

        Returns a ``CachedAnswer`` for an identical earlier release by the same organisation
        (``query.replayed``, no cost), else a ``QueryTicket`` with the budget reserved
        (``query.reserved``). A denial records ``query.rejected`` and raises ``PolicyDenied`` /
        ``BudgetExhausted`` with the rule id (and ``details['query_id']``).
        """
        if summary.dataset != dataset.name:
            raise InternalError("the query summary is for another dataset")
        attempt = _Attempt(principal, dataset, summary, sql, self._now())
        release = self._stored_release(attempt)
        outcome: QueryTicket | CachedAnswer | PolicyDenied
        with self._store.write_transaction() as session:
            if principal.organisation:
                row = workflow.current_policy(session, principal.organisation, dataset.name, lock=True)
                if row is not None:
                    workflow.notice_expiry(session, row, attempt.now)
                attempt.policy = row
            outcome = self._admit(session, attempt, release)
        if isinstance(outcome, PolicyDenied):
            raise outcome
        return outcome

    def _admit(
        self, session: Session, attempt: _Attempt, release: StoredRelease | None
    ) -> QueryTicket | CachedAnswer | PolicyDenied:
        """Decide once on what was read: replay (free), reserve, or record the denial."""
        policy, summary = attempt.policy, attempt.summary
        view = workflow.policy_view(policy) if policy is not None else None
        if release is not None and policy is not None and view is not None:
            free = decide(
                attempt.principal,
                attempt.dataset,
                view,
                summary,
                budget_state(policy),
                attempt.now,
                charge=False,
            )
            if free.allowed:
                return self._record_replay(session, attempt, release, view)
        state = BudgetState(0, 0, 0, 0)
        if policy is not None and attempt.principal.organisation:
            attempt.ledger_id = dataset_row(session, attempt.dataset).ledger_id
            ledger = ledger_row(session, attempt.ledger_id)
            account = account_row(session, attempt.ledger_id, attempt.principal.organisation)
            state = budget_state(policy, ledger, account)
        decision = decide(attempt.principal, attempt.dataset, view, summary, state, attempt.now)
        if not decision.allowed or policy is None or view is None or attempt.ledger_id is None:
            return self._deny(session, attempt, decision.error())
        epsilon, delta = epsilon_units(summary.epsilon, up=True), delta_units(summary.delta, up=True)
        reserve(session, policy, attempt.ledger_id, epsilon, delta)
        query_id = self._new_query(session, attempt, QueryStatus.RESERVED, epsilon=epsilon, delta=delta)
        attempt.record(
            session,
            EventType.QUERY_RESERVED,
            query_id=query_id,
            policy_id=policy.id,
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
        self, session: Session, attempt: _Attempt, entry: StoredRelease, view: PolicyView
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
        state = (
            BudgetState(0, 0, 0, 0)
            if attempt.policy is None
            else own_budget_state(session, attempt.policy, attempt.dataset.name)
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
        }
        insert_query(session, {**values, **fields})
        return query_id

    @staticmethod
    def _reserved_query(session: Runner, query_id: str) -> Row[Any]:
        query = query_record(session, query_id)
        if query is None:
            raise NotFound(f"no query {query_id!r}", code="query.not_found")
        if (
            query.status != QueryStatus.RESERVED.value
            or query.policy_id is None
            or query.ledger_id is None
            or query.organisation is None
        ):
            raise Conflict(f"query {query_id!r} is {query.status}, not reserved", code="query.not_reserved")
        return query

    def complete_query(self, ticket: QueryTicket, answer: dict[str, Any]) -> None:
        """Turn the reservation into a charge and keep the answer for replay (``query.answered``)."""
        try:
            chain.canonical_json(answer)
        except (TypeError, ValueError) as error:
            raise InternalError("the released answer is not JSON-serialisable") from error
        now = self._now()
        shape = result_shape(answer)
        with self._store.write_connection() as session:
            query = self._reserved_query(session, ticket.query_id)
            settle(session, query.policy_id, query.organisation, query.ledger_id, query.epsilon, query.delta)
            finish_query(
                session, query.id, status=QueryStatus.ANSWERED.value, finished_at=now, result_shape=shape
            )
            store_replay(session, query, answer, now)
            _record_charge(session, query, EventType.QUERY_ANSWERED, now, result_shape=shape)

    def fail_query(self, ticket: QueryTicket, error: SandboxError) -> None:
        """Execution failed after data was read: the charge is kept (``query.failed``)."""
        with self._store.write_connection() as connection:
            self._fail(connection, ticket.query_id, error.code, self._now())

    def _fail(self, session: Runner, query_id: str, code: str, now: datetime) -> None:
        query = self._reserved_query(session, query_id)
        settle(session, query.policy_id, query.organisation, query.ledger_id, query.epsilon, query.delta)
        finish_query(session, query.id, status=QueryStatus.FAILED.value, error_code=code, finished_at=now)
        _record_charge(session, query, EventType.QUERY_FAILED, now, error_code=code)

    def settle_abandoned(self, older_than: timedelta) -> int:
        """Charge reservations older than ``older_than`` whose process died (``query.failed``).

        Safe from several processes at once: the rows are locked, so each is charged once.
        """
        now = self._now()
        with self._store.write_transaction() as session:
            stale = session.scalars(
                select(Query.id)
                .where(Query.status == QueryStatus.RESERVED.value, Query.created_at < now - older_than)
                .order_by(Query.created_at)
                .with_for_update()
            ).all()
            for query_id in stale:
                self._fail(session, query_id, "query.abandoned", now)
            return len(stale)

    def reject_query(self, principal: Principal, dataset_name: str, sql: str, error: SandboxError) -> str:
        """A query refused before planning (``query.rejected``, no charge); its query id."""
        now = self._now()
        query_id = workflow.new_id("q")
        rule = error.rule or error.code
        with self._store.write_transaction() as session:
            known = session.get(Dataset, dataset_name)
            session.add(
                Query(
                    id=query_id,
                    principal=principal.name,
                    organisation=principal.organisation,
                    dataset=dataset_name,
                    dataset_owner=known.owner if known is not None else None,
                    sql=sql,
                    epsilon=0,
                    delta=0,
                    status=QueryStatus.REJECTED.value,
                    rule=rule,
                    error_code=error.code,
                    created_at=now,
                    finished_at=now,
                )
            )
            chain.append(
                session,
                EventType.QUERY_REJECTED,
                actor=principal,
                now=now,
                organisation=principal.organisation,
                dataset=dataset_name,
                payload={"query_id": query_id, "sql": sql, "rule": rule, "message": error.message},
            )
        return query_id


def _record_charge(session: Runner, query: Row[Any], type: EventType, now: datetime, **extra: Any) -> None:
    """Append the event of a settled charge (``query.answered`` or ``query.failed``)."""
    chain.append(
        session,
        type,
        actor=query.principal,
        now=now,
        organisation=query.organisation,
        dataset=query.dataset,
        payload={
            "query_id": query.id,
            "policy_id": query.policy_id,
            "epsilon": epsilon_text(query.epsilon),
            "delta": delta_text(query.delta),
            **extra,
        },
    )
