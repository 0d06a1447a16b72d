"""What one query attempt is and what its decision writes: the attempt (who asked what, and what the
decision read) and the query records and audit events it adds, written together — appended to the
chain in a governance transaction, deferred to the sealer on the query path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sandbox.audit import chain
from sandbox.audit.models import EventType
from sandbox.catalog.models import DatasetRecord
from sandbox.control.ledger import QueryStatus, insert_query
from sandbox.control.replays import ReleaseKey
from sandbox.policies import workflow
from sandbox.principals import Principal
from sandbox.query.summary import QuerySummary
from sandbox.store.db import Runner

# every column a query record may set, so the records of one batch insert as one statement
_QUERY_DEFAULTS: dict[str, Any] = {
    "epsilon": 0,
    "delta": 0,
    "replay_of": None,
    "rule": None,
    "error_code": None,
    "finished_at": None,
}


@dataclass
class Attempt:
    """One query attempt: what was asked, and what its decision read."""

    principal: Principal
    dataset: DatasetRecord
    summary: QuerySummary
    sql: str
    now: datetime
    holder: str  # the replica admitting it
    policy: Any = None  # the policy row decided on (ORM or Core)
    ledger_id: str | None = None

    @property
    def release_key(self) -> ReleaseKey:
        """The key of an identical earlier release by the same organisation."""
        summary = self.summary
        return (
            self.principal.organisation or "",
            self.dataset.name,
            summary.dataset_version,
            summary.fingerprint,
        )


@dataclass
class Writes:
    """The query records and audit events of one or more decisions, written together."""

    queries: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def query(self, attempt: Attempt, status: QueryStatus, **fields: Any) -> str:
        """Add the attempt's query record; its id."""
        query_id = workflow.new_id("q")
        self.queries.append(
            {
                **_QUERY_DEFAULTS,
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
                "status": status.value,
                "created_at": attempt.now,
                "holder": attempt.holder,
                **fields,
            }
        )
        return query_id

    def event(self, attempt: Attempt, type: EventType, **payload: Any) -> None:
        """Add the attempt's audit event."""
        self.events.append(
            {
                "type": type,
                "actor": attempt.principal,
                "now": attempt.now,
                "organisation": attempt.principal.organisation,
                "dataset": attempt.dataset.name,
                "payload": payload,
            }
        )

    def flush(self, session: Runner, *, deferred: bool, events: Sequence[dict[str, Any]] = ()) -> None:
        """Write everything added: events deferred to the sealer (with ``events``, pending rows of
        the same batch), or appended to the chain (when the transaction holds the chain head)."""
        if self.queries:
            insert_query(session, self.queries)
        if deferred:
            chain.defer(session, [*events, *(chain.pending_row(**event) for event in self.events)])
        else:
            for event in self.events:
                chain.append(session, **event)
