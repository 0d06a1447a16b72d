"""The control plane facade: the one API the gateway, the CLI and the query pipeline use.

It owns users and API tokens, the access lifecycle, the budget ledger, the audit chain and
metering, all kept in the state store. Every mutating method writes its audit event in the same
write transaction as the state change; who may call what is checked here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import ColumnElement, Row, false, or_, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from sandbox import users
from sandbox.audit import certificate as certificates
from sandbox.audit import chain, checkpoints
from sandbox.audit.export import EventFilter, to_csv, to_jsonl
from sandbox.audit.models import AuditEventView, CheckpointView, EventType, VerifyReport
from sandbox.audit.verify import check_checkpoints, stored_events, walk_store
from sandbox.auth import tokens
from sandbox.auth.tokens import IssuedToken, TokenView
from sandbox.catalog.models import DatasetRecord
from sandbox.errors import (
    Conflict,
    Forbidden,
    InternalError,
    InvalidRequest,
    NotFound,
    PolicyDenied,
    SandboxError,
    Unauthenticated,
)
from sandbox.ledger import (
    MAX_EPSILON,
    BudgetView,
    CachedAnswer,
    QueryStatus,
    QueryTicket,
    QueryView,
    ReplayMemo,
    StoredRelease,
    budget_state,
    budget_view,
    delta_float,
    delta_text,
    delta_units,
    epsilon_float,
    epsilon_text,
    epsilon_units,
    find_replay,
    finish_query,
    insert_query,
    query_record,
    query_view,
    replayed_answer,
    reserve,
    result_shape,
    settle,
    store_replay,
)
from sandbox.metering import UsageReport
from sandbox.metering import usage as usage_report
from sandbox.policies import workflow
from sandbox.policies.engine import check_access, decide
from sandbox.policies.models import AccessRequestView, BudgetState, PolicyStatus, PolicyView
from sandbox.principals import Principal, Role
from sandbox.query.summary import AggregateKind, QuerySummary
from sandbox.settings import Settings
from sandbox.store import migrate
from sandbox.store.db import Runner, Store
from sandbox.store.models import AccessRequest, AuditEvent, AuditHead, Dataset, Policy, Query

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

MAX_LIST = 10_000
OPERATOR_ACTOR = "operator"


REPLAY_MEMO_SIZE = 4096  # stored releases memoised per process (answers are small JSON documents)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _scope(
    principal: Principal,
    organisation: InstrumentedAttribute[Any],
    owner: InstrumentedAttribute[Any],
) -> ColumnElement[bool]:
    """Rows the principal may see: operator all; analyst own organisation's; owner own datasets'."""
    if principal.has(Role.OPERATOR):
        return true()
    clauses: list[ColumnElement[bool]] = []
    if principal.organisation and principal.has(Role.ANALYST):
        clauses.append(organisation == principal.organisation)
    if principal.organisation and principal.has(Role.OWNER):
        clauses.append(owner == principal.organisation)
    return or_(*clauses) if clauses else false()


def _require_operator(principal: Principal, what: str) -> None:
    if not principal.has(Role.OPERATOR):
        raise Forbidden(f"only operators may {what}", code="auth.operator_only")


@dataclass
class _Attempt:
    """One query attempt inside ``begin_query``'s write transaction."""

    principal: Principal
    dataset: DatasetRecord
    summary: QuerySummary
    sql: str
    now: datetime
    policy: Policy | Row[Any] | None = None
    dataset_row: Dataset | None = None

    def budget_state(self) -> BudgetState:
        """The ledger amounts of the attempt's policy (nothing granted without one)."""
        if self.policy is None:
            return BudgetState(0, 0, 0, 0)
        return budget_state(self.policy, self.dataset_row)

    def record(self, session: Runner, type: EventType, **payload: Any) -> None:
        """Append the attempt's audit event."""
        chain.append(
            session,
            type,
            actor=self.principal.name,
            now=self.now,
            organisation=self.principal.organisation,
            dataset=self.dataset.name,
            payload=payload,
        )


class ControlPlane:
    """Users, tokens, access policies, budget ledger, audit chain and metering over one state store.

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
        self.settings = settings
        url = settings.state_db_url
        if create:
            migrate.upgrade(url)
        else:
            migrate.ensure_current(url)
        self._store = Store(url)
        self._clock = clock or _utc_now
        self._releases = ReplayMemo(REPLAY_MEMO_SIZE)

    def close(self) -> None:
        """Release the database connections."""
        self._store.dispose()

    def __enter__(self) -> ControlPlane:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    @property
    def checkpoint_log(self) -> Path:
        """The append-only file every checkpoint is also written to (keep a copy off this host)."""
        return self.settings.home_dir / "audit" / "checkpoints.jsonl"

    # ------------------------------------------------------------------ users & tokens

    def add_user(
        self, name: str, roles: Iterable[Role], organisation: str | None, *, actor: str
    ) -> Principal:
        """Register a user (``user.added``); ``Conflict`` (``user.exists``) if the name is taken."""
        with self._store.write_transaction() as session:
            return users.add(session, name, roles, organisation, actor=actor, now=self._now())

    def get_principal(self, name: str) -> Principal:
        """The registered user; ``NotFound`` (``user.not_found``)."""
        with self._store.read() as session:
            return users.get(session, name)

    def list_users(self) -> list[Principal]:
        """All registered users, by name."""
        with self._store.read() as session:
            return users.list_all(session)

    def issue_token(
        self, username: str, *, actor: str, ttl_days: int | None = None, note: str = ""
    ) -> IssuedToken:
        """A new API token for ``username`` (``token.issued``); the token is shown once."""
        ttl = self.settings.token_ttl_days if ttl_days is None else ttl_days
        with self._store.write_transaction() as session:
            return tokens.issue(session, username, actor=actor, ttl_days=ttl, note=note, now=self._now())

    def revoke_token(self, token_id: str, *, actor: str) -> None:
        """Revoke a token (``token.revoked``); it fails at once afterwards."""
        with self._store.write_transaction() as session:
            tokens.revoke(session, token_id, actor=actor, now=self._now())

    def list_tokens(self, username: str | None = None) -> list[TokenView]:
        """Stored tokens (never the secrets), newest first."""
        with self._store.read() as session:
            return tokens.list_tokens(session, username)

    def principal_for_token(self, token: str) -> Principal:
        """The principal a token belongs to; ``Unauthenticated`` if unknown, revoked or expired."""
        with self._store.connect() as connection:
            try:
                return tokens.principal_for(connection, token, now=self._now())
            except NotFound as error:
                raise Unauthenticated("the token's user no longer exists") from error

    # ------------------------------------------------------------------ datasets

    def _dataset_row(self, session: Session, record: DatasetRecord) -> Dataset:
        """The dataset's row (locked), created from the catalogue record when missing."""
        row = session.get(Dataset, record.name, with_for_update=True)
        if row is None:
            row = Dataset(
                name=record.name,
                owner=record.metadata.owner,
                classification=record.metadata.classification.value,
                version=record.version,
                epsilon_spent=0,
                epsilon_reserved=0,
                delta_spent=0,
                delta_reserved=0,
            )
            session.add(row)
            session.flush()
        return row

    def record_registration(self, actor: Principal, record: DatasetRecord) -> None:
        """Record a dataset registration with its fingerprints (``dataset.registered``).

        The actor must be an operator or an owner of the dataset's owning body.
        """
        if not (actor.has(Role.OPERATOR) or workflow.is_owner(actor, record.metadata.owner)):
            raise Forbidden(
                f"only an operator or an owner of {record.metadata.owner!r} may register {record.name!r}",
                code="dataset.not_owner",
            )
        now = self._now()
        with self._store.write_transaction() as session:
            row = session.get(Dataset, record.name, with_for_update=True)
            if row is not None and row.owner != record.metadata.owner and not actor.has(Role.OPERATOR):
                raise Forbidden(f"dataset {record.name!r} belongs to {row.owner!r}", code="dataset.not_owner")
            if row is not None and row.version == record.version and row.registration_seq is not None:
                raise Conflict(
                    f"version {record.version[:12]} of {record.name!r} is already registered",
                    code="dataset.already_registered",
                )
            row = row or self._dataset_row(session, record)
            event = chain.append(
                session,
                EventType.DATASET_REGISTERED,
                actor=actor.name,
                now=now,
                organisation=record.metadata.owner,
                dataset=record.name,
                payload=certificates.registration_payload(record),
            )
            row.owner = record.metadata.owner
            row.classification = record.metadata.classification.value
            row.version = record.version
            row.registration_seq = event.seq

    def certificate(self, dataset: str, version: str | None = None) -> dict[str, Any]:
        """The registration certificate (登记存证) of a dataset's latest (or given) registration."""
        with self._store.read() as session:
            rows = session.scalars(
                select(AuditEvent)
                .where(AuditEvent.type == EventType.DATASET_REGISTERED.value, AuditEvent.dataset == dataset)
                .order_by(AuditEvent.seq.desc())
            )
            registration = next(
                (
                    event
                    for event in map(chain.view_of, rows)
                    if version is None or event.payload.get("version") == version
                ),
                None,
            )
            if registration is None:
                raise NotFound(
                    f"no registration of dataset {dataset!r}" + (f" at version {version}" if version else ""),
                    code="dataset.not_registered",
                )
            head = session.get(AuditHead, 1)
            if head is None:
                raise InternalError("the audit chain head row is missing")
            latest = self._latest_checkpoint(session)
        covering = latest if latest is not None and latest.seq >= registration.seq else None
        return certificates.build(registration, head.seq, head.hash, covering, chain.format_time(self._now()))

    def _latest_checkpoint(self, session: Session) -> CheckpointView | None:
        row = session.scalar(
            select(AuditEvent)
            .where(AuditEvent.type == EventType.AUDIT_CHECKPOINT.value)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
        candidates = checkpoints.read_log(self.checkpoint_log)
        if row is not None:
            candidates.append(checkpoints.from_event(chain.view_of(row)))
        return max(candidates, key=lambda c: c.seq, default=None)

    def verify_certificate(
        self, certificate: dict[str, Any], public_key_path: Path | None = None
    ) -> VerifyReport:
        """Check a registration certificate against this chain (and the operator's public key)."""
        key = self._public_key(public_key_path)
        with self._store.snapshot() as session:
            return certificates.verify_certificate(certificate, stored_events(session), key)

    def set_dataset_cap(self, actor: Principal, dataset: DatasetRecord, epsilon: float, delta: float) -> None:
        """Set the owner's dataset-wide budget cap over all organisations (``budget.cap_set``)."""
        workflow.ensure_owner(actor, dataset)
        if not math.isfinite(epsilon) or epsilon < 0 or epsilon > MAX_EPSILON:
            raise InvalidRequest(f"the epsilon cap must be between 0 and {MAX_EPSILON:g}", code="cap.invalid")
        if not math.isfinite(delta) or delta < 0 or delta >= 1:
            raise InvalidRequest("the delta cap must be at least 0 and below 1", code="cap.invalid")
        with self._store.write_transaction() as session:
            row = self._dataset_row(session, dataset)
            row.epsilon_cap = epsilon_units(epsilon, up=False)
            row.delta_cap = delta_units(delta, up=False)
            chain.append(
                session,
                EventType.BUDGET_CAP_SET,
                actor=actor.name,
                now=self._now(),
                organisation=dataset.metadata.owner,
                dataset=dataset.name,
                payload={"epsilon": epsilon_text(row.epsilon_cap), "delta": delta_text(row.delta_cap)},
            )

    # ------------------------------------------------------------------ access lifecycle

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
        with self._store.write_transaction() as session:
            self._dataset_row(session, dataset)
            return workflow.create_request(
                session,
                principal,
                dataset,
                purpose=purpose,
                columns=columns,
                epsilon=epsilon,
                delta=delta,
                valid_from=valid_from,
                valid_until=valid_until,
                now=self._now(),
            )

    def _request_views(self, session: Session, rows: Iterable[AccessRequest]) -> list[AccessRequestView]:
        rows = list(rows)
        ids = [r.id for r in rows]
        found = session.execute(select(Policy.request_id, Policy.id).where(Policy.request_id.in_(ids)))
        policies = {request_id: policy_id for request_id, policy_id in found}
        return [workflow.request_view(r, policies.get(r.id)) for r in rows]

    def get_request(self, principal: Principal, request_id: str) -> AccessRequestView:
        """One access request visible to the principal; ``NotFound`` otherwise."""
        with self._store.read() as session:
            row = session.scalar(
                select(AccessRequest).where(
                    AccessRequest.id == request_id,
                    _scope(principal, AccessRequest.organisation, AccessRequest.dataset_owner),
                )
            )
            if row is None:
                raise NotFound(f"no access request {request_id!r}", code="request.not_found")
            return self._request_views(session, [row])[0]

    def list_requests(self, principal: Principal, *, status: str | None = None) -> list[AccessRequestView]:
        """Requests visible to the principal (analyst own org; owner own datasets; operator all)."""
        statement = (
            select(AccessRequest)
            .where(_scope(principal, AccessRequest.organisation, AccessRequest.dataset_owner))
            .order_by(AccessRequest.created_at.desc())
            .limit(MAX_LIST)
        )
        if status is not None:
            statement = statement.where(AccessRequest.status == status)
        with self._store.read() as session:
            return self._request_views(session, session.scalars(statement))

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
        with self._store.write_transaction() as session:
            return workflow.approve(
                session,
                principal,
                request_id,
                dataset,
                settings=self.settings,
                now=self._now(),
                columns=columns,
                epsilon=epsilon,
                delta=delta,
                valid_until=valid_until,
                max_epsilon_per_query=max_epsilon_per_query,
                max_delta_per_query=max_delta_per_query,
                min_group_size=min_group_size,
                aggregates=aggregates,
            )

    def reject(
        self, principal: Principal, request_id: str, dataset: DatasetRecord, *, reason: str
    ) -> AccessRequestView:
        """The dataset's owner rejects with a reason (``access.rejected``)."""
        with self._store.write_transaction() as session:
            return workflow.reject(session, principal, request_id, dataset, reason=reason, now=self._now())

    def get_policy(self, principal: Principal, policy_id: str) -> PolicyView:
        """One policy visible to the principal; ``NotFound`` otherwise."""
        with self._store.read() as session:
            row = session.scalar(
                select(Policy).where(
                    Policy.id == policy_id, _scope(principal, Policy.organisation, Policy.dataset_owner)
                )
            )
            if row is None:
                raise NotFound(f"no policy {policy_id!r}", code="policy.not_found")
            return workflow.policy_view(row)

    def list_policies(self, principal: Principal) -> list[PolicyView]:
        """Policies visible to the principal (analyst own org; owner own datasets; operator all)."""
        with self._store.read() as session:
            rows = session.scalars(
                select(Policy)
                .where(_scope(principal, Policy.organisation, Policy.dataset_owner))
                .order_by(Policy.approved_at.desc())
                .limit(MAX_LIST)
            )
            return [workflow.policy_view(r) for r in rows]

    def revoke_policy(
        self, principal: Principal, policy_id: str, dataset: DatasetRecord, *, reason: str
    ) -> PolicyView:
        """The dataset's owner revokes a policy (``policy.revoked``); its queries stop at once."""
        with self._store.write_transaction() as session:
            return workflow.revoke(session, principal, policy_id, dataset, reason=reason, now=self._now())

    def expire_policies(self, now: datetime | None = None) -> int:
        """Mark every active policy past ``valid_until`` expired (``policy.expired``); the count."""
        moment = workflow.as_utc(now) if now is not None else self._now()
        with self._store.write_transaction() as session:
            return workflow.expire_due(session, moment)

    # ------------------------------------------------------------------ queries

    def active_policy(self, principal: Principal, dataset: DatasetRecord) -> PolicyView:
        """The organisation's usable policy on the dataset; ``PolicyDenied`` with the rule otherwise."""
        now = self._now()
        view: PolicyView | None = None
        if principal.organisation:
            with self._store.connect() as connection:
                found = workflow.current_policy_row(connection, principal.organisation, dataset.name)
            due = found is not None and workflow.is_past_due(found, now)
            view = workflow.policy_view(found) if found is not None else None
            if due:
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
        policy: PolicyView | None = None,
    ) -> QueryTicket | CachedAnswer:
        """Replay, or decide and reserve, atomically.

        Returns a ``CachedAnswer`` for an identical earlier release by the same organisation
        (``query.replayed``, no cost), else a ``QueryTicket`` with the budget reserved
        (``query.reserved``). A denial records ``query.rejected`` and raises ``PolicyDenied`` /
        ``BudgetExhausted`` with the rule id (and ``details['query_id']``).

        A replay is looked up and decided outside the write lock (``policy``, the caller's freshly
        read active policy, saves reading it again); its write transaction re-reads the policy, goes
        on only if it is still active, and records the event, so replays hold the write lock briefly.
        Everything else happens in one write transaction: decide, then reserve or record the denial.
        """
        if summary.dataset != dataset.name:
            raise InternalError("the query summary is for another dataset")
        now = self._now()
        replayed = self._replay(_Attempt(principal, dataset, summary, sql, now), policy)
        if replayed is not None:
            return replayed
        outcome: QueryTicket | CachedAnswer | PolicyDenied
        with self._store.write_transaction() as session:
            attempt = _Attempt(principal, dataset, summary, sql, now)
            if principal.organisation:
                row = workflow.current_policy(session, principal.organisation, dataset.name, lock=True)
                if row is not None:
                    workflow.notice_expiry(session, row, now)
                attempt.policy = row
            outcome = self._try_replay(session, attempt) or self._try_reserve(session, attempt)
        if isinstance(outcome, PolicyDenied):
            raise outcome
        return outcome

    def _replay(self, attempt: _Attempt, policy: PolicyView | None) -> CachedAnswer | None:
        """The replay fast path: decide outside the write lock, re-read the policy when recording."""
        organisation = attempt.principal.organisation
        if not organisation:
            return None
        entry = self._releases.get(self._release_key(attempt)) if policy is not None else None
        if entry is None:
            with self._store.connect() as connection:
                if policy is None:
                    row = workflow.current_policy_row(connection, organisation, attempt.dataset.name)
                    policy = None if row is None else workflow.policy_view(row)
                entry = None if policy is None else self._stored_release(connection, attempt)
        if policy is None or entry is None or not self._replay_allowed(attempt, policy):
            return None
        with self._store.write_connection() as connection:
            current = workflow.policy_row(connection, policy.id)
            if (
                current is None
                or current.status != PolicyStatus.ACTIVE.value
                or workflow.is_past_due(current, attempt.now)
            ):
                return None  # revoked or expired meanwhile: the full path decides and records why
            attempt.policy = current
            return self._record_replay(connection, attempt, entry, policy, attempt.budget_state())

    @staticmethod
    def _release_key(attempt: _Attempt) -> tuple[str, str, str, str]:
        summary = attempt.summary
        organisation = attempt.principal.organisation or ""
        return (organisation, attempt.dataset.name, summary.dataset_version, summary.fingerprint)

    def _stored_release(self, runner: Runner, attempt: _Attempt) -> StoredRelease | None:
        """The stored release of an identical query by the attempt's organisation (memoised), if any."""
        key = self._release_key(attempt)
        entry = self._releases.get(key)
        if entry is None:
            entry = find_replay(runner, *key)
            if entry is not None:
                self._releases.put(key, entry)
        return entry

    def _replay_allowed(self, attempt: _Attempt, policy: PolicyView) -> bool:
        """Whether the policy allows replaying to the attempt's principal now (replays cost nothing)."""
        if workflow.is_past_due(policy, attempt.now):
            return False
        decision = decide(
            attempt.principal,
            attempt.dataset,
            policy,
            attempt.summary,
            BudgetState(0, 0, 0, 0),
            attempt.now,
            charge=False,
        )
        return decision.allowed

    def _try_replay(self, session: Session, attempt: _Attempt) -> CachedAnswer | None:
        """Replay inside the full path's write transaction, if allowed."""
        found = self._replay_candidate(session, attempt)
        return None if found is None else self._record_replay(session, attempt, *found)

    def _replay_candidate(
        self, session: Runner, attempt: _Attempt
    ) -> tuple[StoredRelease, PolicyView, BudgetState] | None:
        """The stored release of an identical query, with the policy allowing its replay, if any."""
        if attempt.policy is None:
            return None
        view = workflow.policy_view(attempt.policy)
        if not self._replay_allowed(attempt, view):
            return None
        entry = self._stored_release(session, attempt)
        return None if entry is None else (entry, view, attempt.budget_state())

    def _record_replay(
        self,
        session: Runner,
        attempt: _Attempt,
        entry: StoredRelease | Row[Any],
        view: PolicyView,
        state: BudgetState,
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

    def _try_reserve(self, session: Session, attempt: _Attempt) -> QueryTicket | PolicyDenied:
        """Decide; reserve the cost and return the ticket, or record the denial and return its error."""
        policy, summary = attempt.policy, attempt.summary
        view = workflow.policy_view(policy) if policy is not None else None
        attempt.dataset_row = self._dataset_row(session, attempt.dataset)
        decision = decide(
            attempt.principal, attempt.dataset, view, summary, attempt.budget_state(), attempt.now
        )
        if not decision.allowed or policy is None or view is None:
            return self._deny(session, attempt, decision.error())
        epsilon, delta = epsilon_units(summary.epsilon, up=True), delta_units(summary.delta, up=True)
        before = attempt.budget_state()
        reserve(session, policy, attempt.dataset_row, epsilon, delta)
        query_id = self._new_query(session, attempt, QueryStatus.RESERVED, epsilon=epsilon, delta=delta)
        attempt.record(
            session,
            EventType.QUERY_RESERVED,
            query_id=query_id,
            policy_id=policy.id,
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
            epsilon_remaining=epsilon_float(before.epsilon_remaining - epsilon),
            delta_remaining=delta_float(before.delta_remaining - delta),
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

    def _reserved_query(self, session: Runner, query_id: str) -> Row[Any]:
        query = query_record(session, query_id)
        if query is None:
            raise NotFound(f"no query {query_id!r}", code="query.not_found")
        if query.status != QueryStatus.RESERVED.value or query.policy_id is None:
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
            settle(session, query.policy_id, query.dataset, query.epsilon, query.delta)
            finish_query(
                session, query.id, status=QueryStatus.ANSWERED.value, finished_at=now, result_shape=shape
            )
            store_replay(session, query, answer, now)
            chain.append(
                session,
                EventType.QUERY_ANSWERED,
                actor=query.principal,
                now=now,
                organisation=query.organisation,
                dataset=query.dataset,
                payload={
                    "query_id": query.id,
                    "policy_id": query.policy_id,
                    "epsilon": epsilon_text(query.epsilon),
                    "delta": delta_text(query.delta),
                    "result_shape": shape,
                },
            )

    def fail_query(self, ticket: QueryTicket, error: SandboxError) -> None:
        """Execution failed after data was read: the charge is kept (``query.failed``)."""
        with self._store.write_connection() as connection:
            self._fail(connection, ticket.query_id, error.code, self._now())

    def _fail(self, session: Runner, query_id: str, code: str, now: datetime) -> None:
        query = self._reserved_query(session, query_id)
        settle(session, query.policy_id, query.dataset, query.epsilon, query.delta)
        finish_query(session, query.id, status=QueryStatus.FAILED.value, error_code=code, finished_at=now)
        chain.append(
            session,
            EventType.QUERY_FAILED,
            actor=query.principal,
            now=now,
            organisation=query.organisation,
            dataset=query.dataset,
            payload={
                "query_id": query.id,
                "policy_id": query.policy_id,
                "epsilon": epsilon_text(query.epsilon),
                "delta": delta_text(query.delta),
                "error_code": code,
            },
        )

    def settle_abandoned(self, older_than: timedelta) -> int:
        """Charge reservations older than ``older_than`` whose process died (``query.failed``)."""
        now = self._now()
        with self._store.write_transaction() as session:
            stale = session.scalars(
                select(Query.id)
                .where(Query.status == QueryStatus.RESERVED.value, Query.created_at < now - older_than)
                .order_by(Query.created_at)
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
                actor=principal.name,
                now=now,
                organisation=principal.organisation,
                dataset=dataset_name,
                payload={"query_id": query_id, "sql": sql, "rule": rule, "message": error.message},
            )
        return query_id

    def list_queries(
        self, principal: Principal, *, dataset: str | None = None, limit: int = 100
    ) -> list[QueryView]:
        """Query history, newest first: analyst own org; owner own datasets; operator all."""
        statement = (
            select(Query)
            .where(_scope(principal, Query.organisation, Query.dataset_owner))
            .order_by(Query.created_at.desc(), Query.id)
            .limit(max(1, min(limit, MAX_LIST)))
        )
        if dataset is not None:
            statement = statement.where(Query.dataset == dataset)
        with self._store.read() as session:
            return [query_view(q) for q in session.scalars(statement)]

    def get_query(self, principal: Principal, query_id: str) -> QueryView:
        """One query visible to the principal; ``NotFound`` otherwise (other tenants' included)."""
        with self._store.read() as session:
            row = session.scalar(
                select(Query).where(
                    Query.id == query_id, _scope(principal, Query.organisation, Query.dataset_owner)
                )
            )
            if row is None:
                raise NotFound(f"no query {query_id!r}", code="query.not_found")
            return query_view(row)

    def budget(self, principal: Principal) -> list[BudgetView]:
        """Budget per visible policy (active first): granted, spent, reserved, remaining."""
        with self._store.read() as session:
            rows = session.scalars(
                select(Policy)
                .where(_scope(principal, Policy.organisation, Policy.dataset_owner))
                .order_by((Policy.status == PolicyStatus.ACTIVE.value).desc(), Policy.approved_at.desc())
                .limit(MAX_LIST)
            )
            return [budget_view(r) for r in rows]

    # ------------------------------------------------------------------ audit & metering

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
        after: int | None = None,
        limit: int = 1000,
    ) -> list[AuditEventView]:
        """Matching audit events in chain order (operator only).

        Without ``after`` the newest ``limit`` events; with it, the first ``limit`` events after that
        seq (page forward by passing the last seq seen).
        """
        _require_operator(principal, "read the audit log")
        selection = EventFilter(actor, organisation, dataset, type, since, until)
        size = max(1, min(limit, MAX_LIST))
        with self._store.read() as session:
            if after is None:
                rows = list(session.scalars(selection.select_latest(size)))[::-1]
            else:
                rows = list(session.scalars(selection.select(size, after=after)))
            return [chain.view_of(r) for r in rows]

    def export_audit(
        self,
        principal: Principal,
        fmt: Literal["jsonl", "csv"],
        *,
        actor: str | None = None,
        organisation: str | None = None,
        dataset: str | None = None,
        type: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> str:
        """Every matching audit event as JSON Lines or CSV (operator only), exactly as hashed."""
        _require_operator(principal, "export the audit log")
        if fmt not in {"jsonl", "csv"}:
            raise InvalidRequest("export format must be jsonl or csv", code="audit.invalid_format")
        selection = EventFilter(actor, organisation, dataset, type, since, until)
        with self._store.read() as session:
            events = [chain.view_of(r) for r in session.scalars(selection.select())]
        return to_jsonl(events) if fmt == "jsonl" else to_csv(events)

    def _public_key(self, path: Path | None) -> Ed25519PublicKey | None:
        chosen = path or self.settings.keys_dir / checkpoints.PUBLIC_KEY_FILE
        if path is None and not chosen.exists():
            return None
        return checkpoints.load_public_key(chosen)

    def verify_audit(self, public_key_path: Path | None = None) -> VerifyReport:
        """Walk the chain and check every checkpoint; report the first broken or missing link.

        Without ``public_key_path`` the key in ``keys_dir`` is used if present; otherwise checkpoint
        signatures are not checked (a warning says so).
        """
        key = self._public_key(public_key_path)
        logged = checkpoints.read_log(self.checkpoint_log)
        with self._store.snapshot() as session:
            walked, head = walk_store(session)

            def hash_at(seq: int) -> str | None:
                if seq > walked.last_seq:
                    return None
                row = session.get(AuditEvent, seq)
                return row.hash if row is not None else None

            found = [checkpoints.from_event(e) for e in walked.checkpoint_events] + logged
            checked = check_checkpoints(found, hash_at, key)
        problem = walked.problem or checked.problem
        return VerifyReport(
            ok=problem is None,
            events=walked.events,
            head_seq=head.seq,
            head_hash=head.hash,
            first_error=problem,
            checkpoints=checked.found,
            checkpoints_verified=checked.verified,
            warnings=tuple(checked.warnings),
        )

    def generate_checkpoint_key(self, *, overwrite: bool = False) -> tuple[Path, Path]:
        """Create the operator's Ed25519 key pair in ``keys_dir``; (private, public) paths."""
        return checkpoints.generate_key(self.settings.keys_dir, overwrite=overwrite)

    def checkpoint(
        self, private_key_path: Path | None = None, *, actor: str = OPERATOR_ACTOR
    ) -> CheckpointView:
        """Sign the chain head with the operator's key (``audit.checkpoint``) and log it to a file."""
        path = private_key_path or self.settings.keys_dir / checkpoints.PRIVATE_KEY_FILE
        if not path.exists():
            raise NotFound(
                f"no audit signing key at {path}: create one with `sandbox audit keygen`", code="audit.no_key"
            )
        key = checkpoints.load_private_key(path)
        now = self._now()
        with self._store.write_transaction() as session:
            head = session.get_one(AuditHead, 1)
            signed = checkpoints.sign(key, head.seq, head.hash, now)
            event = chain.append(
                session,
                EventType.AUDIT_CHECKPOINT,
                actor=actor,
                now=now,
                payload=checkpoints.event_payload(signed),
            )
        recorded = signed.model_copy(update={"event_seq": event.seq})
        checkpoints.append_to_log(self.checkpoint_log, recorded)
        return recorded

    def usage(
        self,
        principal: Principal,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        organisation: str | None = None,
        dataset: str | None = None,
    ) -> UsageReport:
        """Metering rows per organisation and dataset (operator: all; owner: own datasets only)."""
        if principal.has(Role.OPERATOR):
            owner = None
        elif principal.has(Role.OWNER) and principal.organisation:
            owner = principal.organisation
        else:
            raise Forbidden("only operators and data owners may read usage", code="usage.forbidden")
        with self._store.read() as session:
            return usage_report(
                session,
                since=workflow.as_utc(since) if since else None,
                until=workflow.as_utc(until) if until else None,
                organisation=organisation,
                dataset=dataset,
                dataset_owner=owner,
            )
