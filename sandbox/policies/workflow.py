"""The access lifecycle: request → approve / reject / withdraw / expire; amend; revoke; expiry at
``valid_until``.

Every transition is checked here (only the dataset's owner decides; classification limits) and
writes its audit event in the caller's write transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from sandbox.audit import chain
from sandbox.audit.models import EventType
from sandbox.budget import (
    delta_float,
    delta_text,
    epsilon_float,
    epsilon_text,
    epsilon_units,
)
from sandbox.catalog.models import Classification, DatasetRecord
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound
from sandbox.policies.checks import (
    canonical_columns,
    check_important,
    checked_text,
    delta_amount,
    ensure_owner,
    epsilon_amount,
    owned_policy,
    refuse_core,
)
from sandbox.policies.models import AccessRequestView, PolicyStatus, PolicyView, RequestStatus
from sandbox.principals import Principal, Role
from sandbox.query.summary import AggregateKind
from sandbox.settings import Settings
from sandbox.store.db import Runner
from sandbox.store.models import AccessRequest, Base, Policy

SYSTEM_ACTOR = "system"
MAX_PURPOSE_LENGTH = 4000
MAX_REASON_LENGTH = 2000


def new_id(prefix: str) -> str:
    """A random object id such as ``req_3f2a9c...``."""
    return f"{prefix}_{secrets.token_hex(16)}"


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; naive datetimes are taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def request_view(row: AccessRequest, policy_id: str | None = None) -> AccessRequestView:
    """The view of a stored request."""
    return AccessRequestView(
        id=row.id,
        organisation=row.organisation,
        dataset=row.dataset,
        dataset_owner=row.dataset_owner,
        requested_by=row.requested_by,
        purpose=row.purpose,
        columns=tuple(row.columns),
        epsilon=epsilon_float(row.epsilon),
        delta=delta_float(row.delta),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        status=RequestStatus(row.status),
        created_at=row.created_at,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        reason=row.reason,
        policy_id=policy_id,
    )


def policy_view(row: Policy | Row[Any]) -> PolicyView:
    """The view of a stored policy."""
    return PolicyView(
        id=row.id,
        request_id=row.request_id,
        organisation=row.organisation,
        dataset=row.dataset,
        dataset_owner=row.dataset_owner,
        columns=tuple(row.columns),
        epsilon=epsilon_float(row.epsilon_granted),
        delta=delta_float(row.delta_granted),
        max_epsilon_per_query=epsilon_float(row.max_epsilon_per_query),
        max_delta_per_query=delta_float(row.max_delta_per_query),
        min_group_size=row.min_group_size,
        aggregates=tuple(AggregateKind(a) for a in row.aggregates),
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        status=PolicyStatus(row.status),
        approved_by=row.approved_by,
        approved_at=row.approved_at,
        ended_by=row.ended_by,
        ended_at=row.ended_at,
        reason=row.reason,
    )


def create_request(
    session: Session,
    principal: Principal,
    dataset: DatasetRecord,
    *,
    purpose: str,
    columns: list[str],
    epsilon: float,
    delta: float,
    valid_from: datetime | None,
    valid_until: datetime,
    now: datetime,
) -> AccessRequestView:
    """An analyst's request for their organisation (``access.requested``)."""
    if not principal.has(Role.ANALYST) or not principal.organisation:
        raise Forbidden(
            "only analysts of an authorised organisation may request access",
            code="policy.not_analyst",
            rule="policy.not_analyst",
        )
    refuse_core(dataset)
    start = as_utc(valid_from) if valid_from is not None else now
    end = as_utc(valid_until)
    if end <= start or end <= now:
        raise InvalidRequest(
            "valid_until must be in the future and after valid_from", code="request.invalid_validity"
        )
    pending = session.scalar(
        select(AccessRequest.id).where(
            AccessRequest.organisation == principal.organisation,
            AccessRequest.dataset == dataset.name,
            AccessRequest.status == RequestStatus.PENDING.value,
        )
    )
    if pending is not None:
        raise Conflict(
            f"organisation {principal.organisation!r} already has pending request {pending} on "
            f"{dataset.name!r}: wait for the owner's decision, or withdraw it first",
            code="request.duplicate_pending",
            details={"request_id": pending},
        )
    row = AccessRequest(
        id=new_id("req"),
        organisation=principal.organisation,
        dataset=dataset.name,
        dataset_owner=dataset.metadata.owner,
        requested_by=principal.name,
        purpose=checked_text(purpose, "purpose", MAX_PURPOSE_LENGTH),
        columns=canonical_columns(dataset, columns),
        epsilon=epsilon_amount(epsilon, "request.invalid_epsilon"),
        delta=delta_amount(delta, "request.invalid_delta"),
        valid_from=start,
        valid_until=end,
        status=RequestStatus.PENDING.value,
        created_at=now,
    )
    session.add(row)
    chain.append(
        session,
        EventType.ACCESS_REQUESTED,
        actor=principal,
        now=now,
        organisation=row.organisation,
        dataset=row.dataset,
        payload={
            "request_id": row.id,
            "purpose": row.purpose,
            "columns": row.columns,
            "epsilon": epsilon_text(row.epsilon),
            "delta": delta_text(row.delta),
            "valid_from": start.isoformat(),
            "valid_until": end.isoformat(),
        },
    )
    return request_view(row)


def _pending_request(
    session: Session, principal: Principal, request_id: str, dataset: DatasetRecord
) -> AccessRequest:
    ensure_owner(principal, dataset)
    row = session.get(AccessRequest, request_id)
    if row is None or row.dataset_owner != principal.organisation:
        raise NotFound(f"no access request {request_id!r} on your datasets", code="request.not_found")
    if row.dataset != dataset.name:
        raise InvalidRequest(
            f"request {request_id!r} is for dataset {row.dataset!r}, not {dataset.name!r}",
            code="request.dataset_mismatch",
        )
    if row.status != RequestStatus.PENDING.value:
        raise Conflict(f"request {request_id!r} was already {row.status}", code="request.already_decided")
    return row


def withdraw(session: Session, principal: Principal, request_id: str, *, now: datetime) -> AccessRequestView:
    """An analyst of the requesting organisation withdraws a pending request (``access.withdrawn``)."""
    row = session.get(AccessRequest, request_id, with_for_update=True)
    if row is None or not principal.has(Role.ANALYST) or row.organisation != principal.organisation:
        raise NotFound(f"no access request {request_id!r} of your organisation", code="request.not_found")
    if row.status != RequestStatus.PENDING.value:
        raise Conflict(f"request {request_id!r} was already {row.status}", code="request.already_decided")
    row.status, row.decided_by, row.decided_at = RequestStatus.WITHDRAWN.value, principal.name, now
    chain.append(
        session,
        EventType.ACCESS_WITHDRAWN,
        actor=principal,
        now=now,
        organisation=row.organisation,
        dataset=row.dataset,
        payload={"request_id": row.id},
    )
    return request_view(row)


def expire_requests(session: Session, now: datetime, ttl: timedelta) -> int:
    """Mark every request pending for longer than ``ttl`` expired (``access.expired``); how many."""
    due = session.scalars(
        select(AccessRequest)
        .where(AccessRequest.status == RequestStatus.PENDING.value, AccessRequest.created_at <= now - ttl)
        .order_by(AccessRequest.created_at, AccessRequest.id)
        .with_for_update()
    ).all()
    for row in due:
        row.status, row.decided_by, row.decided_at = RequestStatus.EXPIRED.value, SYSTEM_ACTOR, now
        chain.append(
            session,
            EventType.ACCESS_EXPIRED,
            actor=SYSTEM_ACTOR,
            now=now,
            organisation=row.organisation,
            dataset=row.dataset,
            payload={"request_id": row.id, "pending_since": row.created_at.isoformat()},
        )
    return len(due)


def approve(
    session: Session,
    principal: Principal,
    request_id: str,
    dataset: DatasetRecord,
    *,
    settings: Settings,
    now: datetime,
    columns: list[str] | None,
    epsilon: float | None,
    delta: float | None,
    valid_until: datetime | None,
    max_epsilon_per_query: float,
    max_delta_per_query: float,
    min_group_size: int,
    aggregates: Iterable[AggregateKind] | None,
) -> PolicyView:
    """The owner approves a pending request, possibly narrowing it (``access.approved``)."""
    request = _pending_request(session, principal, request_id, dataset)
    refuse_core(dataset)
    granted_columns = request.columns if columns is None else canonical_columns(dataset, columns)
    wider = [c for c in granted_columns if c.lower() not in {r.lower() for r in request.columns}]
    if wider:
        raise InvalidRequest(
            f"column(s) {', '.join(wider)} were not requested; an approval may only narrow the request",
            code="approval.widens_request",
        )
    granted_epsilon = (
        request.epsilon if epsilon is None else epsilon_amount(epsilon, "approval.invalid_epsilon")
    )
    granted_delta = request.delta if delta is None else delta_amount(delta, "approval.invalid_delta")
    end = request.valid_until if valid_until is None else as_utc(valid_until)
    if granted_epsilon > request.epsilon or granted_delta > request.delta or end > request.valid_until:
        raise InvalidRequest(
            f"the approval may not exceed the request: epsilon {epsilon_text(request.epsilon)}, "
            f"delta {delta_text(request.delta)}, valid_until {request.valid_until.isoformat()}",
            code="approval.widens_request",
        )
    if end <= now or end <= request.valid_from:
        raise InvalidRequest(
            "valid_until must be in the future and after valid_from", code="approval.invalid_validity"
        )
    cap = epsilon_amount(max_epsilon_per_query, "approval.invalid_epsilon_cap")
    if cap > granted_epsilon or cap > epsilon_units(settings.max_epsilon_per_query, up=False):
        raise InvalidRequest(
            f"max_epsilon_per_query must be at most the granted epsilon {epsilon_text(granted_epsilon)} "
            f"and the service ceiling {settings.max_epsilon_per_query:g}",
            code="approval.invalid_epsilon_cap",
        )
    delta_cap = delta_amount(max_delta_per_query, "approval.invalid_delta_cap")
    if delta_cap > granted_delta:
        raise InvalidRequest(
            f"max_delta_per_query must be at most the granted delta {delta_text(granted_delta)}",
            code="approval.invalid_delta_cap",
        )
    if min_group_size < 0:
        raise InvalidRequest("min_group_size must be at least 0", code="approval.invalid_min_group_size")
    kinds = sorted({AggregateKind(a) for a in (aggregates if aggregates is not None else AggregateKind)})
    if not kinds:
        raise InvalidRequest("allow at least one aggregate kind", code="approval.no_aggregates")
    if dataset.metadata.classification == Classification.IMPORTANT:
        check_important(settings, cap, min_group_size)
    current = current_policy(session, request.organisation, request.dataset)
    if current is not None:
        notice_expiry(session, current, now)
        if current.status == PolicyStatus.ACTIVE.value:
            raise Conflict(
                f"organisation {request.organisation!r} already has active policy {current.id} on "
                f"{request.dataset!r}: revoke it first",
                code="policy.already_active",
                rule="policy.already_active",
            )
    policy = Policy(
        id=new_id("pol"),
        request_id=request.id,
        organisation=request.organisation,
        dataset=request.dataset,
        dataset_owner=request.dataset_owner,
        columns=granted_columns,
        aggregates=[k.value for k in kinds],
        epsilon_granted=granted_epsilon,
        delta_granted=granted_delta,
        epsilon_spent=0,
        delta_spent=0,
        max_epsilon_per_query=cap,
        max_delta_per_query=delta_cap,
        min_group_size=min_group_size,
        valid_from=request.valid_from,
        valid_until=end,
        status=PolicyStatus.ACTIVE.value,
        approved_by=principal.name,
        approved_at=now,
    )
    session.add(policy)
    request.status, request.decided_by, request.decided_at = RequestStatus.APPROVED.value, principal.name, now
    chain.append(
        session,
        EventType.ACCESS_APPROVED,
        actor=principal,
        now=now,
        organisation=policy.organisation,
        dataset=policy.dataset,
        payload={
            "request_id": request.id,
            "policy_id": policy.id,
            "columns": policy.columns,
            "aggregates": policy.aggregates,
            "epsilon": epsilon_text(granted_epsilon),
            "delta": delta_text(granted_delta),
            "max_epsilon_per_query": epsilon_text(cap),
            "max_delta_per_query": delta_text(delta_cap),
            "min_group_size": min_group_size,
            "valid_from": policy.valid_from.isoformat(),
            "valid_until": end.isoformat(),
        },
    )
    return policy_view(policy)


def reject(
    session: Session,
    principal: Principal,
    request_id: str,
    dataset: DatasetRecord,
    *,
    reason: str,
    now: datetime,
) -> AccessRequestView:
    """The owner rejects a pending request with a reason (``access.rejected``)."""
    request = _pending_request(session, principal, request_id, dataset)
    request.reason = checked_text(reason, "reason", MAX_REASON_LENGTH)
    request.status, request.decided_by, request.decided_at = RequestStatus.REJECTED.value, principal.name, now
    chain.append(
        session,
        EventType.ACCESS_REJECTED,
        actor=principal,
        now=now,
        organisation=request.organisation,
        dataset=request.dataset,
        payload={"request_id": request.id, "reason": request.reason},
    )
    return request_view(request)


def revoke(
    session: Session,
    principal: Principal,
    policy_id: str,
    dataset: DatasetRecord,
    *,
    reason: str,
    now: datetime,
) -> PolicyView:
    """The owner revokes an active policy (``policy.revoked``); queries stop at once."""
    policy = owned_policy(session, principal, policy_id, dataset)
    notice_expiry(session, policy, now)
    if policy.status != PolicyStatus.ACTIVE.value:
        raise Conflict(f"policy {policy_id!r} is already {policy.status}", code="policy.not_active")
    policy.reason = checked_text(reason, "reason", MAX_REASON_LENGTH)
    policy.status, policy.ended_by, policy.ended_at = PolicyStatus.REVOKED.value, principal.name, now
    chain.append(
        session,
        EventType.POLICY_REVOKED,
        actor=principal,
        now=now,
        organisation=policy.organisation,
        dataset=policy.dataset,
        payload={"policy_id": policy.id, "reason": policy.reason},
    )
    return policy_view(policy)


def current_policy(session: Session, organisation: str, dataset: str, *, lock: bool = False) -> Policy | None:
    """The organisation's active policy on the dataset, else its latest ended one, else ``None``."""
    statement = (
        select(Policy)
        .where(Policy.organisation == organisation, Policy.dataset == dataset)
        .order_by((Policy.status == PolicyStatus.ACTIVE.value).desc(), Policy.approved_at.desc())
        .limit(1)
    )
    return session.scalar(statement.with_for_update() if lock else statement)


_POLICIES = Base.metadata.tables[Policy.__tablename__]
# pre-built Core statements of the query hot paths
_CURRENT_POLICY = (
    select(_POLICIES)
    .where(
        _POLICIES.c.organisation == bindparam("b_organisation"), _POLICIES.c.dataset == bindparam("b_dataset")
    )
    .order_by((_POLICIES.c.status == PolicyStatus.ACTIVE.value).desc(), _POLICIES.c.approved_at.desc())
    .limit(1)
)
_POLICY_STATUS = select(_POLICIES.c.status).where(_POLICIES.c.id == bindparam("b_id"))
_POLICY_BY_ID = select(_POLICIES).where(_POLICIES.c.id == bindparam("b_id"))


def current_policy_row(runner: Runner, organisation: str, dataset: str) -> Row[Any] | None:
    """``current_policy`` as a plain row (one pre-built Core statement, nothing locked)."""
    return runner.execute(
        _CURRENT_POLICY, {"b_organisation": organisation, "b_dataset": dataset}
    ).one_or_none()


def policy_status(runner: Runner, policy_id: str) -> str | None:
    """The current status of a policy (one indexed read), ``None`` if there is no such policy."""
    status: str | None = runner.execute(_POLICY_STATUS, {"b_id": policy_id}).scalar_one_or_none()
    return status


def policy_row(runner: Runner, policy_id: str) -> Row[Any] | None:
    """A policy as a plain row (one indexed read, nothing locked), ``None`` if there is no such policy."""
    return runner.execute(_POLICY_BY_ID, {"b_id": policy_id}).one_or_none()


def is_past_due(policy: Policy | Row[Any] | PolicyView, now: datetime) -> bool:
    """Whether an active policy has reached its ``valid_until``."""
    return policy.status == PolicyStatus.ACTIVE.value and now >= policy.valid_until


def notice_expiry(session: Session, policy: Policy, now: datetime) -> bool:
    """Mark an active policy past ``valid_until`` expired (``policy.expired``, once); whether it did."""
    if not is_past_due(policy, now):
        return False
    policy.status, policy.ended_by, policy.ended_at = PolicyStatus.EXPIRED.value, SYSTEM_ACTOR, now
    chain.append(
        session,
        EventType.POLICY_EXPIRED,
        actor=SYSTEM_ACTOR,
        now=now,
        organisation=policy.organisation,
        dataset=policy.dataset,
        payload={"policy_id": policy.id, "valid_until": policy.valid_until.isoformat()},
    )
    return True


def expire_due(session: Session, now: datetime) -> int:
    """Mark every active policy past ``valid_until`` expired; how many were."""
    due = session.scalars(
        select(Policy)
        .where(Policy.status == PolicyStatus.ACTIVE.value, Policy.valid_until <= now)
        .order_by(Policy.valid_until, Policy.id)
        .with_for_update()
    ).all()
    return sum(notice_expiry(session, policy, now) for policy in due)
