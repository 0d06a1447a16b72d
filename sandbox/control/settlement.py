"""Use case: closing an admitted query. Its charge was made at admission and is never refunded;
here the query is marked answered (its release kept for replay) or failed, in one write
transaction with its audit event, taking no lock other queries wait on. Also: refusals before
planning, and the sweep that closes queries whose replica died.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, or_, select, update

from sandbox.audit import chain
from sandbox.audit.models import EventType
from sandbox.budget import delta_text, epsilon_text
from sandbox.control.base import Core
from sandbox.control.ledger import QueryStatus, QueryTicket, insert_query, query_record, result_shape
from sandbox.control.replays import store_replay
from sandbox.errors import Conflict, InternalError, NotFound, SandboxError
from sandbox.policies import workflow
from sandbox.principals import Principal
from sandbox.store.db import Runner
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
    .returning(*_QUERIES.c)
)
_OWNER = select(_DATASETS.c.owner).where(_DATASETS.c.name == bindparam("b_name"))


class Settlement(Core):
    """Answered, failed and abandoned queries; refusals before planning."""

    def complete_query(self, ticket: QueryTicket, answer: dict[str, Any]) -> None:
        """Mark the query answered and keep its release for replay (``query.answered``)."""
        try:
            chain.canonical_json(answer)
        except (TypeError, ValueError) as error:
            raise InternalError("the released answer is not JSON-serialisable") from error
        now, shape = self._now(), result_shape(answer)
        with self._hot() as connection:
            query = _close(connection, ticket.query_id, QueryStatus.ANSWERED, now, shape=shape)
            store_replay(connection, query, answer, now)
            _record_settlement(connection, query, EventType.QUERY_ANSWERED, now, result_shape=shape)

    def fail_query(self, ticket: QueryTicket, error: SandboxError) -> None:
        """Execution failed after data may have been read: the charge stays (``query.failed``)."""
        now = self._now()
        with self._hot() as connection:
            query = _close(connection, ticket.query_id, QueryStatus.FAILED, now, error=error.code)
            _record_settlement(connection, query, EventType.QUERY_FAILED, now, error_code=error.code)

    def settle_abandoned(self, older_than: timedelta) -> int:
        """Close queries admitted over ``older_than`` ago whose replica stopped its heartbeat for as
        long (the process died): ``query.failed`` with ``query.abandoned``, the charge kept.

        A query whose replica is alive is still running, however long it takes. Safe from several
        processes at once: each query is closed by exactly one of them.
        """
        now = self._now()
        cutoff = now - older_than
        alive = select(_REPLICAS.c.id).where(_REPLICAS.c.last_seen >= cutoff)
        stale = (
            select(_QUERIES.c.id)
            .where(
                _QUERIES.c.status == QueryStatus.RESERVED.value,
                _QUERIES.c.created_at < cutoff,
                or_(_QUERIES.c.holder.is_(None), _QUERIES.c.holder.not_in(alive)),
            )
            .order_by(_QUERIES.c.created_at)
        )
        closed = 0
        with self._hot() as connection:
            for query_id in connection.execute(stale).scalars().all():
                query = connection.execute(
                    _CLOSE,
                    {
                        "b_id": query_id,
                        "b_status": QueryStatus.FAILED.value,
                        "b_now": now,
                        "b_shape": None,
                        "b_error": "query.abandoned",
                    },
                ).one_or_none()
                if query is not None:  # another sweeper did not close it first
                    _record_settlement(
                        connection, query, EventType.QUERY_FAILED, now, error_code="query.abandoned"
                    )
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
                    "dataset_version": None,
                    "ledger_id": None,
                    "policy_id": None,
                    "sql": sql,
                    "normalized_sql": None,
                    "fingerprint": None,
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
            chain.defer(
                connection,
                EventType.QUERY_REJECTED,
                actor=principal,
                now=now,
                organisation=principal.organisation,
                dataset=dataset_name,
                payload={"query_id": query_id, "sql": sql, "rule": rule, "message": error.message},
            )
        return query_id


def _close(
    connection: Runner,
    query_id: str,
    status: QueryStatus,
    now: datetime,
    *,
    shape: dict[str, Any] | None = None,
    error: str | None = None,
) -> Row[Any]:
    """Mark a running query ``status`` (once); ``NotFound`` / ``Conflict`` otherwise."""
    values = {"b_id": query_id, "b_status": status.value, "b_now": now, "b_shape": shape, "b_error": error}
    query = connection.execute(_CLOSE, values).one_or_none()
    if query is not None:
        return query
    if query_record(connection, query_id) is None:
        raise NotFound(f"no query {query_id!r}", code="query.not_found")
    raise Conflict(f"query {query_id!r} is not running (already closed)", code="query.not_reserved")


def _record_settlement(
    connection: Runner, query: Row[Any], type: EventType, now: datetime, **extra: Any
) -> None:
    """Defer the event of a closed query (``query.answered`` or ``query.failed``)."""
    chain.defer(
        connection,
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
