"""The control plane facade: the one API the gateway, the CLI and the query pipeline use.

It owns users and API tokens, the access lifecycle, the budget ledger, the audit chain and
metering, all kept in the state store. Every mutating method writes its audit event in the same
transaction as the state change; who may call what is checked here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from sandbox.audit.models import AuditEventView, CheckpointView, VerifyReport
from sandbox.auth.tokens import IssuedToken, TokenView
from sandbox.catalog.models import DatasetRecord
from sandbox.errors import SandboxError
from sandbox.ledger import BudgetView, CachedAnswer, QueryTicket, QueryView
from sandbox.metering import UsageReport
from sandbox.policies.models import AccessRequestView, PolicyView
from sandbox.principals import Principal, Role
from sandbox.query.summary import AggregateKind, QuerySummary
from sandbox.settings import Settings

__all__ = [
    "AccessRequestView",
    "AuditEventView",
    "BudgetView",
    "CachedAnswer",
    "CheckpointView",
    "ControlPlane",
    "IssuedToken",
    "PolicyView",
    "QueryTicket",
    "QueryView",
    "TokenView",
    "UsageReport",
    "VerifyReport",
]


class ControlPlane:
    """Users, tokens, access policies, budget ledger, audit chain and metering over one state store."""

    def __init__(self, settings: Settings, *, create: bool = False) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the database connections."""
        raise NotImplementedError

    # users & tokens
    def add_user(
        self, name: str, roles: Iterable[Role], organisation: str | None, *, actor: str
    ) -> Principal:
        """Register a user (``user.added``); ``Conflict`` (``user.exists``) if the name is taken."""
        raise NotImplementedError

    def get_principal(self, name: str) -> Principal:
        """The registered user; ``NotFound`` (``user.not_found``)."""
        raise NotImplementedError

    def list_users(self) -> list[Principal]:
        """All registered users, by name."""
        raise NotImplementedError

    def issue_token(
        self, username: str, *, actor: str, ttl_days: int | None = None, note: str = ""
    ) -> IssuedToken:
        """A new API token for ``username`` (``token.issued``); the token is shown once."""
        raise NotImplementedError

    def revoke_token(self, token_id: str, *, actor: str) -> None:
        """Revoke a token (``token.revoked``); it fails at once afterwards."""
        raise NotImplementedError

    def list_tokens(self, username: str | None = None) -> list[TokenView]:
        """Stored tokens (never the secrets)."""
        raise NotImplementedError

    def principal_for_token(self, token: str) -> Principal:
        """The principal a token belongs to; ``Unauthenticated`` if unknown, revoked or expired."""
        raise NotImplementedError

    # datasets
    def record_registration(self, actor: Principal, record: DatasetRecord) -> None:
        """Record a dataset registration with its fingerprints (``dataset.registered``)."""
        raise NotImplementedError

    def certificate(self, dataset: str, version: str | None = None) -> dict[str, Any]:
        """The registration certificate (登记存证) of a dataset's (latest or given) registration."""
        raise NotImplementedError

    def verify_certificate(
        self, certificate: dict[str, Any], public_key_path: Path | None = None
    ) -> VerifyReport:
        """Check a registration certificate against this chain."""
        raise NotImplementedError

    def set_dataset_cap(self, actor: Principal, dataset: DatasetRecord, epsilon: float, delta: float) -> None:
        """Set the owner's dataset-wide budget cap over all organisations (``budget.cap_set``)."""
        raise NotImplementedError

    # access lifecycle
    def request_access(
        self,
        principal: Principal,
        dataset: DatasetRecord,
        *,
        purpose: str,
        columns: list[str],
        epsilon: float,
        delta: float,
        valid_until: datetime,
        valid_from: datetime | None = None,
    ) -> AccessRequestView:
        """An analyst asks access for their organisation (``access.requested``)."""
        raise NotImplementedError

    def get_request(self, principal: Principal, request_id: str) -> AccessRequestView:
        """One access request visible to the principal; ``NotFound`` otherwise."""
        raise NotImplementedError

    def list_requests(self, principal: Principal, *, status: str | None = None) -> list[AccessRequestView]:
        """Requests visible to the principal: analyst own org; owner own datasets; operator all."""
        raise NotImplementedError

    def approve(
        self,
        principal: Principal,
        request_id: str,
        dataset: DatasetRecord,
        *,
        columns: list[str] | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
        valid_until: datetime | None = None,
        max_epsilon_per_query: float,
        max_delta_per_query: float = 0.0,
        min_group_size: int = 0,
        aggregates: Iterable[AggregateKind] | None = None,
    ) -> PolicyView:
        """The dataset's owner approves, possibly narrowing (``access.approved``)."""
        raise NotImplementedError

    def reject(
        self, principal: Principal, request_id: str, dataset: DatasetRecord, *, reason: str
    ) -> AccessRequestView:
        """The dataset's owner rejects with a reason (``access.rejected``)."""
        raise NotImplementedError

    def get_policy(self, principal: Principal, policy_id: str) -> PolicyView:
        """One policy visible to the principal; ``NotFound`` otherwise."""
        raise NotImplementedError

    def list_policies(self, principal: Principal) -> list[PolicyView]:
        """Policies visible to the principal: analyst own org; owner own datasets; operator all."""
        raise NotImplementedError

    def revoke_policy(
        self, principal: Principal, policy_id: str, dataset: DatasetRecord, *, reason: str
    ) -> PolicyView:
        """The dataset's owner revokes a policy (``policy.revoked``)."""
        raise NotImplementedError

    def expire_policies(self, now: datetime | None = None) -> int:
        """Mark every active policy past ``valid_until`` expired (``policy.expired``); the count."""
        raise NotImplementedError

    # queries (called by the pipeline)
    def active_policy(self, principal: Principal, dataset: DatasetRecord) -> PolicyView:
        """The principal's organisation's usable policy on the dataset; ``PolicyDenied`` with the rule."""
        raise NotImplementedError

    def begin_query(
        self, principal: Principal, dataset: DatasetRecord, summary: QuerySummary, *, sql: str
    ) -> QueryTicket | CachedAnswer:
        """Replay, or decide and reserve, in one write transaction.

        Returns a ``CachedAnswer`` for an identical earlier release (``query.replayed``, no cost),
        else a ``QueryTicket`` with the budget reserved (``query.reserved``). A denial records
        ``query.rejected`` and raises ``PolicyDenied`` / ``BudgetExhausted`` with the rule id.
        """
        raise NotImplementedError

    def complete_query(self, ticket: QueryTicket, answer: dict[str, Any]) -> None:
        """Turn the reservation into a charge, keep the answer for replay (``query.answered``)."""
        raise NotImplementedError

    def fail_query(self, ticket: QueryTicket, error: SandboxError) -> None:
        """Execution failed after data was read: the charge is kept (``query.failed``)."""
        raise NotImplementedError

    def reject_query(self, principal: Principal, dataset_name: str, sql: str, error: SandboxError) -> str:
        """A query refused before planning (``query.rejected``, no charge); its query id."""
        raise NotImplementedError

    def list_queries(
        self, principal: Principal, *, dataset: str | None = None, limit: int = 100
    ) -> list[QueryView]:
        """Query history: analyst own org; owner own datasets; operator all (newest first)."""
        raise NotImplementedError

    def get_query(self, principal: Principal, query_id: str) -> QueryView:
        """One query visible to the principal; ``NotFound`` otherwise."""
        raise NotImplementedError

    def budget(self, principal: Principal) -> list[BudgetView]:
        """Budget per visible policy: granted, spent, reserved, remaining."""
        raise NotImplementedError

    # audit & metering
    def audit_events(
        self,
        principal: Principal,
        *,
        actor: str | None = None,
        organisation: str | None = None,
        dataset: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[AuditEventView]:
        """Filtered audit events in chain order (operator only)."""
        raise NotImplementedError

    def verify_audit(self, public_key_path: Path | None = None) -> VerifyReport:
        """Walk the chain and check every checkpoint; the first broken or missing link."""
        raise NotImplementedError

    def export_audit(self, principal: Principal, fmt: Literal["jsonl", "csv"], **filters: Any) -> str:
        """Filtered audit events as JSON Lines or CSV (operator only)."""
        raise NotImplementedError

    def checkpoint(self, private_key_path: Path | None = None) -> CheckpointView:
        """Sign the chain head with the operator's Ed25519 key (``audit.checkpoint``)."""
        raise NotImplementedError

    def usage(
        self,
        principal: Principal,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        organisation: str | None = None,
        dataset: str | None = None,
    ) -> UsageReport:
        """Metering rows per organisation and dataset (operator: all; owner: own datasets)."""
        raise NotImplementedError
