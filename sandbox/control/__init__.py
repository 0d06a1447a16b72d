"""The control plane: the one API the gateway, the CLI, the web console and the query pipeline use.

It owns users and API tokens, the access lifecycle, the lifetime budget ledger, the audit chain
and metering, all kept in the state store. Every mutating method writes its audit event in the
same write transaction as the state change, naming the verified principal that acted; who may
call what is checked here. One module per use case:

- ``identity``: users, roles, tokens, the CLI's verified ``--as``, refusals as audit events
- ``registrations``: registering datasets, certificates, lifetime ledgers and their caps
- ``access``: request, withdraw, approve, reject, amend, revoke, expiry
- ``admission``: the one admission step of a query (replay, or decide and charge)
- ``settlement``: answered, failed and abandoned queries, refusals before planning
- ``usage``: query history, budgets, metering
- ``auditing``: reading, exporting, signing and verifying the chain (and the state it proves)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from sandbox.audit.models import AuditEventView, CheckpointView, StateDivergence, VerifyReport
from sandbox.auth.tokens import IssuedToken, TokenView
from sandbox.control.access import Access
from sandbox.control.admission import REPLAY_MEMO_SIZE, Admission, AdmitJob
from sandbox.control.auditing import OPERATOR_ACTOR, Auditing
from sandbox.control.base import Page
from sandbox.control.identity import Identity
from sandbox.control.ledger import BudgetView, CachedAnswer, QueryTicket, QueryView
from sandbox.control.metering import UsageReport
from sandbox.control.refusals import RefusalLimiter
from sandbox.control.registrations import Registrations
from sandbox.control.replays import ReplayMemo
from sandbox.control.settlement import CloseJob, Settlement
from sandbox.control.usage import Usage
from sandbox.policies.models import AccessRequestView, PolicyView
from sandbox.settings import Settings

__all__ = [
    "OPERATOR_ACTOR",
    "AccessRequestView",
    "AuditEventView",
    "BudgetView",
    "CachedAnswer",
    "CheckpointView",
    "ControlPlane",
    "IssuedToken",
    "Page",
    "PolicyView",
    "QueryTicket",
    "QueryView",
    "StateDivergence",
    "TokenView",
    "UsageReport",
    "VerifyReport",
]


class ControlPlane(Identity, Registrations, Access, Admission, Settlement, Usage, Auditing):
    """Users, tokens, access policies, lifetime budget ledger, audit chain and metering over one
    state store (see the use-case modules for each group of methods).

    ``create=True`` upgrades the database to the current schema first; otherwise a database that
    is not at the current schema is refused (``StoreOutdatedError``: run ``sandbox db upgrade``).
    ``clock`` returns the current aware time (tests pass their own).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        create: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(settings, create=create, clock=clock)
        self._releases = ReplayMemo(REPLAY_MEMO_SIZE)
        self._views = {}
        self._unclosed = deque()
        self.refusals = RefusalLimiter()

    def _write_batch(self, connection: Connection, jobs: Sequence[Any]) -> None:
        """One group-commit batch: close the queries that finished, then admit the new ones."""
        closed = self._close_batch(connection, [job for job in jobs if isinstance(job, CloseJob)])
        self._admit_batch(connection, [job for job in jobs if isinstance(job, AdmitJob)], closed)

    def _flushes(self, jobs: Sequence[Any]) -> bool:
        """A batch with an admission (a charge) is flushed to disk before it returns. One of closings
        only is not (``Store.hot_connection``): a closing moves no budget, and if an OS crash drops
        it, the query is swept as abandoned with its charge kept."""
        return any(isinstance(job, AdmitJob) for job in jobs)

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
