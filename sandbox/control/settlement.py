"""Use case: closing an admitted query. Its charge was made at admission and is never refunded;
here the query is marked answered (its release kept for replay) or failed, with its audit event,
in the batch transaction of the moment (``sandbox.control.batching``), taking no lock other
queries wait on. Also: refusals before planning, and the sweep that closes queries whose replica
died.

A closing the state store did not take (it was away: the client gets a 503) is kept and written
again by this replica's next sweep; no other replica's sweep would close the query, since its
replica is alive. An answer closed that way is stored for replay like any other, so the client's
retry gets it at no further charge.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, bindparam, or_, select, update
from sqlalchemy.exc import DBAPIError

from sandbox.audit import chain
from sandbox.audit.models import EventType
from sandbox.budget import delta_text, epsilon_text
from sandbox.control.base import Core
from sandbox.control.batching import Job
from sandbox.control.charges import Changed
from sandbox.control.ledger import QueryStatus, QueryTicket, insert_query, query_record, result_shape
from sandbox.control.replays import replay_row, store_replays
from sandbox.errors import Conflict, InternalError, NotFound, SandboxError
from sandbox.policies import workflow
from sandbox.principals import Principal
from sandbox.store.models import Base, Dataset, Query, Replica

_QUERIES = Base.metadata.tables[Query.__tablename__]
_REPLICAS = Base.metadata.tables[Replica.__tablename__]
_DATASETS = Base.metadata.tables[Dataset.__tablename__]
# a query is closed once: the WHERE re-checks it is still running
_CLOSE = (
    update(_QUERIES)
    .where(_QUERIES.c.id == bindparam("b_id"), _QUERIES.c.status == QueryStatus.RESERVED.value)
    .values(
        status=bindparam("b_status"),
        finished_at=bindparam("b_now", type_=_QUERIES.c.finished_at.type),
        result_shape=bindparam("b_shape", type_=_QUERIES.c.result_shape.type),
        error_code=bindparam("b_error"),
    )
)
_OWNER = select(_DATASETS.c.owner).where(_DATASETS.c.name == bindparam("b_name"))


class CloseJob(Job):
    """One closing in a batch: the query of ``ticket`` answered with ``answer``, or failed."""

    def __init__(
        self,
        ticket: QueryTicket,
        now: datetime,
        *,
        answer: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        super().__init__()
        self.ticket, self.now, self.answer, self.error_code = ticket, now, answer, error
        self.shape = None if answer is None else result_shape(answer)
        self.answer_json = None if answer is None else chain.canonical_json(answer).decode()

    @property
    def status(self) -> QueryStatus:
        """The query's final status."""
        return QueryStatus.ANSWERED if self.answer is not None else QueryStatus.FAILED


class Settlement(Core):
    """Answered, failed and abandoned queries; refusals before planning."""

    _unclosed: deque[CloseJob]  # closings the store did not take, for the next sweep

    def complete_query(self, ticket: QueryTicket, answer: dict[str, Any]) -> None:
        """Mark the query answered and keep its release for replay (``query.answered``)."""
        try:
            job = CloseJob(ticket, self._now(), answer=answer)
        except (TypeError, ValueError) as error:
            raise InternalError("the released answer is not JSON-serialisable") from error
        self._close(job)

    def fail_query(self, ticket: QueryTicket, error: SandboxError) -> None:
        """Execution failed after data may have been read: the charge stays (``query.failed``)."""
        self._close(CloseJob(ticket, self._now(), error=error.code))

    def _close(self, job: CloseJob) -> None:
        """Write a closing; one the store does not take is kept for the next sweep, and re-raised."""
        try:
            self._writes.submit(job)
        except DBAPIError:
            self._unclosed.append(job)
            raise

    def _close_again(self) -> int:
        """Write the closings the store did not take before; how many it took now. One it still
        does not take stays kept (with those after it) and its error is raised."""
        closed = 0
        for _ in range(len(self._unclosed)):
            job = self._unclosed.popleft()
            again = CloseJob(job.ticket, job.now, answer=job.answer, error=job.error_code)
            try:
                self._writes.submit(again)
            except (Conflict, NotFound):
                continue  # closed already: the first write committed after all, or a sweep
            except DBAPIError:
                self._unclosed.appendleft(job)
                raise
            closed += 1
        return closed

    def _close_batch(self, connection: Connection, jobs: Sequence[CloseJob]) -> list[dict[str, Any]]:
        """Close every query of a batch (each once) and return their events, for the batch to
        defer; ``NotFound``/``Conflict`` for a lone job whose query is unknown or closed already,
        ``Changed`` to retry a batch one job at a time."""
        if not jobs:
            return []
        closing = [
            {
                "b_id": job.ticket.query_id,
                "b_status": job.status.value,
                "b_now": job.now,
                "b_shape": job.shape,
                "b_error": job.error_code,
            }
            for job in jobs
        ]
        if cast("CursorResult[Any]", connection.execute(_CLOSE, closing)).rowcount != len(jobs):
            if len(jobs) > 1:
                raise Changed
            _not_closable(connection, jobs[0].ticket.query_id)
        store_replays(
            connection,
            [
                replay_row(_release_key(job.ticket), job.ticket.query_id, job.answer_json, job.now)
                for job in jobs
                if job.answer_json is not None
            ],
        )
        return [_settled_event(job) for job in jobs]

    def settle_abandoned(self, older_than: timedelta) -> int:
        """Close queries admitted over ``older_than`` ago whose replica stopped its heartbeat for as
        long (the process died): ``query.failed`` with ``query.abandoned``, the charge kept. First
        write this replica's closings the store did not take (see the module docstring).

        A query of a live replica is left alone for twice as long: executions stop at
        ``query_timeout_s``, so by then its closing is lost for good (the reply of its admission
        never reached the replica, say), and it is closed too. Safe from several processes at once:
        each query is closed by exactly one of them.
        """
        closed = self._close_again()
        now = self._now()
        cutoff, stuck = now - older_than, now - 2 * older_than
        alive = select(_REPLICAS.c.id).where(_REPLICAS.c.last_seen >= cutoff)
        stale = (
            select(_QUERIES)
            .where(
                _QUERIES.c.status == QueryStatus.RESERVED.value,
                _QUERIES.c.created_at < cutoff,
                or_(
                    _QUERIES.c.holder.is_(None),
                    _QUERIES.c.holder.not_in(alive),
                    _QUERIES.c.created_at < stuck,
                ),
            )
            .order_by(_QUERIES.c.created_at)
        )
        with self._hot() as connection:
            for query in connection.execute(stale).all():
                values = {"b_id": query.id, "b_status": QueryStatus.FAILED.value, "b_now": now}
                values |= {"b_shape": None, "b_error": "query.abandoned"}
                if cast("CursorResult[Any]", connection.execute(_CLOSE, values)).rowcount != 1:
                    continue  # another sweeper closed it first
                event = _closed_event(
                    EventType.QUERY_FAILED,
                    (query.principal, query.organisation, query.dataset, query.id, query.policy_id),
                    (query.epsilon, query.delta),
                    now,
                    error_code="query.abandoned",
                )
                chain.defer(connection, [event])
                closed += 1
        return closed

    def reject_query(self, principal: Principal, dataset_name: str, sql: str, error: SandboxError) -> str:
        """A query refused before planning (``query.rejected``, no charge); its query id."""
        now = self._now()
        query_id = workflow.new_id("q")
        rule = error.rule or error.code
        with self._hot() as connection:
            owner = connection.execute(_OWNER, {"b_name": dataset_name}).scalar_one_or_none()
            insert_query(
                connection,
                {
                    "id": query_id,
                    "principal": principal.name,
                    "organisation": principal.organisation,
                    "dataset": dataset_name,
                    "dataset_owner": owner,
                    "sql": sql,
                    "epsilon": 0,
                    "delta": 0,
                    "status": QueryStatus.REJECTED.value,
                    "rule": rule,
                    "error_code": error.code,
                    "created_at": now,
                    "finished_at": now,
                    "holder": self._upkeep.replica_id,
                },
            )
            event = chain.pending_row(
                EventType.QUERY_REJECTED,
                actor=principal,
                now=now,
                organisation=principal.organisation,
                dataset=dataset_name,
                payload={"query_id": query_id, "sql": sql, "rule": rule, "message": error.message},
            )
            chain.defer(connection, [event])
        return query_id


def _release_key(ticket: QueryTicket) -> tuple[str, str, str, str]:
    return (ticket.policy.organisation, ticket.dataset, ticket.dataset_version, ticket.fingerprint)


def _not_closable(connection: Connection, query_id: str) -> None:
    """Raise why a query could not be closed: unknown, or not running any more."""
    if query_record(connection, query_id) is None:
        raise NotFound(f"no query {query_id!r}", code="query.not_found")
    raise Conflict(f"query {query_id!r} is not running (already closed)", code="query.not_reserved")


def _settled_event(job: CloseJob) -> dict[str, Any]:
    """The deferred event of a closed query (``query.answered`` or ``query.failed``)."""
    ticket = job.ticket
    extra = {"result_shape": job.shape} if job.answer is not None else {"error_code": job.error_code}
    return _closed_event(
        EventType.QUERY_ANSWERED if job.answer is not None else EventType.QUERY_FAILED,
        (ticket.principal, ticket.policy.organisation, ticket.dataset, ticket.query_id, ticket.policy.id),
        (ticket.epsilon_units, ticket.delta_units),
        job.now,
        **extra,
    )


def _closed_event(
    type: EventType,
    query: tuple[str, str | None, str, str, str | None],
    units: tuple[int, int],
    now: datetime,
    **extra: Any,
) -> dict[str, Any]:
    """The pending row of a closing's event: ``query`` is (principal, organisation, dataset, query
    id, policy id), ``units`` its charge (epsilon, delta)."""
    principal, organisation, dataset, query_id, policy_id = query
    return chain.pending_row(
        type,
        actor=principal,
        now=now,
        organisation=organisation,
        dataset=dataset,
        payload={
            "query_id": query_id,
            "policy_id": policy_id,
            "epsilon": epsilon_text(units[0]),
            "delta": delta_text(units[1]),
            **extra,
        },
    )
