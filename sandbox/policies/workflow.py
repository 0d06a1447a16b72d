"""The access lifecycle: request → approve / reject / withdraw / expire; amend; revoke; expiry at
``valid_until``.

Every transition is checked here (only the dataset's owner decides; classification limits) and
writes its audit event in the caller's write transaction.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, select
from sqlalchemy.orm import Session

from sandbox.audit import chain
from sandbox.audit.models import EventType
from sandbox.budget import (
    MAX_EPSILON,
    delta_float,
    delta_text,
    delta_units,
    epsilon_float,
    epsilon_text,
    epsilon_units,
)
from sandbox.catalog.models import Classification, DatasetRecord
from sandbox.errors import Conflict, Forbidden, InvalidRequest, NotFound, PolicyDenied
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


def is_owner(principal: Principal, owner: str) -> bool:
    """Whether the principal is an owner acting for the owning body ``owner``."""
    return principal.has(Role.OWNER) and principal.organisation == owner


def ensure_owner(principal: Principal, dataset: DatasetRecord) -> None:
    """``Forbidden`` (``policy.not_owner``) unless the principal owns the dataset."""
    if not is_owner(principal, dataset.metadata.owner):
        raise Forbidden(
            f"only an owner of {dataset.metadata.owner!r} may decide on dataset {dataset.name!r}",
            code="policy.not_owner",
            rule="policy.not_owner",
        )


def _refuse_core(dataset: DatasetRecord) -> None:
    if dataset.metadata.classification == Classification.CORE:
        raise PolicyDenied(
            "policy.core_dataset",
            f"dataset {dataset.name!r} is classified core (核心): it is listed in the catalogue only "
            "and access to it cannot be requested or granted",
        )


def _text(value: str, name: str, limit: int) -> str:
    cleaned = value.strip()
    if not cleaned or len(cleaned) > limit:
        raise InvalidRequest(f"give a {name} of 1 to {limit} characters", code=f"request.{name}_required")
    return cleaned


def _canonical_columns(dataset: DatasetRecord, columns: Iterable[str]) -> list[str]:
    """Declared spelling of ``column`` or ``table.column`` names, without duplicates."""
    resolved: list[str] = []
    unknown: list[str] = []
    for name in columns:
        table_name, _, column_name = name.strip().rpartition(".")
        tables = [
            t for t in dataset.metadata.tables if not table_name or t.name.lower() == table_name.lower()
        ]
        match = next(((t, c) for t in tables if (c := t.column(column_name)) is not None), None)
        if match is None:
            unknown.append(name)
            continue
        table, column = match
        canonical = f"{table.name}.{column.name}" if table_name else column.name
        if canonical not in resolved:
            resolved.append(canonical)
    if unknown:
        raise InvalidRequest(
            f"dataset {dataset.name!r} declares no column(s) {', '.join(unknown)}; "
            "name declared columns as `column` or `table.column`",
            code="request.unknown_column",
            details={"columns": unknown},
        )
    if not resolved:
        raise InvalidRequest("name at least one column", code="request.no_columns")
    return resolved


def _epsilon(value: float, code: str) -> int:
    if not math.isfinite(value) or value <= 0 or value > MAX_EPSILON:
        raise InvalidRequest(f"epsilon must be greater than 0 and at most {MAX_EPSILON:g}", code=code)
    units = epsilon_units(value, up=False)
    if units <= 0:
        raise InvalidRequest("epsilon must be at least 1e-9", code=code)
    return units


def _delta(value: float, code: str) -> int:
    if not math.isfinite(value) or value < 0 or value >= 1:
        raise InvalidRequest("delta must be at least 0 and below 1", code=code)
    return delta_units(value, up=False)


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
    _refuse_core(dataset)
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
        purpose=_text(purpose, "purpose", MAX_PURPOSE_LENGTH),
        columns=_canonical_columns(dataset, columns),
        epsilon=_epsilon(epsilon, "request.invalid_epsilon"),
        delta=_delta(delta, "request.invalid_delta"),
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
    _refuse_core(dataset)
    granted_columns = request.columns if columns is None else _canonical_columns(dataset, columns)
    wider = [c for c in granted_columns if c.lower() not in {r.lower() for r in request.columns}]
    if wider:
        raise InvalidRequest(
            f"column(s) {', '.join(wider)} were not requested; an approval may only narrow the request",
            code="approval.widens_request",
        )
    granted_epsilon = request.epsilon if epsilon is None else _epsilon(epsilon, "approval.invalid_epsilon")
    granted_delta = request.delta if delta is None else _delta(delta, "approval.invalid_delta")
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
    cap = _epsilon(max_epsilon_per_query, "approval.invalid_epsilon_cap")
    if cap > granted_epsilon or cap > epsilon_units(settings.max_epsilon_per_query, up=False):
        raise InvalidRequest(
            f"max_epsilon_per_query must be at most the granted epsilon {epsilon_text(granted_epsilon)} "
            f"and the service ceiling {settings.max_epsilon_per_query:g}",
            code="approval.invalid_epsilon_cap",
        )
    delta_cap = _delta(max_delta_per_query, "approval.invalid_delta_cap")
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
        _check_important(settings, cap, min_group_size)
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
        epsilon_reserved=0,
        delta_spent=0,
        delta_reserved=0,
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


_AMENDABLE = (
    "epsilon",
    "delta",
    "valid_until",
    "columns",
    "aggregates",
    "max_epsilon_per_query",
    "max_delta_per_query",
)


def _policy_terms(policy: Policy) -> dict[str, Any]:
    """The amendable terms of a policy as recorded in the audit chain."""
    return {
        "epsilon": epsilon_text(policy.epsilon_granted),
        "delta": delta_text(policy.delta_granted),
        "valid_until": policy.valid_until.isoformat(),
        "columns": list(policy.columns),
        "aggregates": list(policy.aggregates),
        "max_epsilon_per_query": epsilon_text(policy.max_epsilon_per_query),
        "max_delta_per_query": delta_text(policy.max_delta_per_query),
    }


def amend(
    session: Session,
    principal: Principal,
    policy_id: str,
    dataset: DatasetRecord,
    *,
    settings: Settings,
    now: datetime,
    epsilon: float | None = None,
    delta: float | None = None,
    valid_until: datetime | None = None,
    columns: list[str] | None = None,
    aggregates: Iterable[AggregateKind] | None = None,
    max_epsilon_per_query: float | None = None,
    max_delta_per_query: float | None = None,
    reason: str = "",
) -> PolicyView:
    """The owner amends an active policy (``policy.amended``, old and new terms).

    Budgets may be topped up (or lowered, never below what was spent and reserved), validity
    extended or shortened (into the future), columns and aggregates only narrowed.
    """
    policy = _owned_policy(session, principal, policy_id, dataset)
    notice_expiry(session, policy, now)
    if policy.status != PolicyStatus.ACTIVE.value:
        raise Conflict(f"policy {policy_id!r} is {policy.status}, not active", code="policy.not_active")
    old = _policy_terms(policy)
    if epsilon is not None:
        units = _epsilon(epsilon, "amend.invalid_epsilon")
        used = policy.epsilon_spent + policy.epsilon_reserved
        if units < used:
            raise InvalidRequest(
                f"epsilon {epsilon_text(units)} is below what the policy already spent or reserved, "
                f"{epsilon_text(used)}: grant at least that",
                code="amend.below_spent",
            )
        policy.epsilon_granted = units
    if delta is not None:
        units = _delta(delta, "amend.invalid_delta")
        used = policy.delta_spent + policy.delta_reserved
        if units < used:
            raise InvalidRequest(
                f"delta {delta_text(units)} is below what the policy already spent or reserved, "
                f"{delta_text(used)}: grant at least that",
                code="amend.below_spent",
            )
        policy.delta_granted = units
    if valid_until is not None:
        end = as_utc(valid_until)
        if end <= now or end <= policy.valid_from:
            raise InvalidRequest(
                "valid_until must be in the future and after valid_from", code="amend.invalid_validity"
            )
        policy.valid_until = end
    if columns is not None:
        narrowed = _canonical_columns(dataset, columns)
        granted = {c.lower() for c in policy.columns}
        wider = [c for c in narrowed if c.lower() not in granted]
        if wider:
            raise InvalidRequest(
                f"column(s) {', '.join(wider)} are not granted by policy {policy.id}; an amendment may only "
                "narrow columns (new columns need a new request)",
                code="amend.widens_policy",
            )
        policy.columns = narrowed
    if aggregates is not None:
        kinds = sorted({AggregateKind(a).value for a in aggregates})
        wider = [k for k in kinds if k not in policy.aggregates]
        if wider or not kinds:
            raise InvalidRequest(
                f"aggregates must be a non-empty subset of {', '.join(policy.aggregates)}",
                code="amend.widens_policy",
            )
        policy.aggregates = kinds
    if max_epsilon_per_query is not None:
        policy.max_epsilon_per_query = _epsilon(max_epsilon_per_query, "amend.invalid_epsilon_cap")
    if max_delta_per_query is not None:
        policy.max_delta_per_query = _delta(max_delta_per_query, "amend.invalid_delta_cap")
    _check_caps(settings, dataset, policy)
    new = _policy_terms(policy)
    changed = [key for key in _AMENDABLE if old[key] != new[key]]
    if not changed:
        raise InvalidRequest("the amendment changes nothing", code="amend.no_change")
    chain.append(
        session,
        EventType.POLICY_AMENDED,
        actor=principal,
        now=now,
        organisation=policy.organisation,
        dataset=policy.dataset,
        payload={
            "policy_id": policy.id,
            "old": {key: old[key] for key in changed},
            "new": {key: new[key] for key in changed},
            "reason": reason.strip()[:MAX_REASON_LENGTH],
        },
    )
    return policy_view(policy)


def _check_caps(settings: Settings, dataset: DatasetRecord, policy: Policy) -> None:
    ceiling = epsilon_units(settings.max_epsilon_per_query, up=False)
    if policy.max_epsilon_per_query > min(policy.epsilon_granted, ceiling):
        raise InvalidRequest(
            "max_epsilon_per_query must be at most the granted epsilon "
            f"{epsilon_text(policy.epsilon_granted)} and the service ceiling "
            f"{settings.max_epsilon_per_query:g}",
            code="amend.invalid_epsilon_cap",
        )
    if policy.max_delta_per_query > policy.delta_granted:
        raise InvalidRequest(
            f"max_delta_per_query must be at most the granted delta {delta_text(policy.delta_granted)}",
            code="amend.invalid_delta_cap",
        )
    if dataset.metadata.classification == Classification.IMPORTANT:
        _check_important(settings, policy.max_epsilon_per_query, policy.min_group_size)


def _check_important(settings: Settings, cap: int, min_group_size: int) -> None:
    if min_group_size < settings.important_min_group_size:
        raise InvalidRequest(
            f"dataset is classified important (重要): min_group_size must be at least "
            f"{settings.important_min_group_size} (setting important_min_group_size)",
            code="policy.important_min_group_size",
            rule="policy.important_min_group_size",
        )
    limit = epsilon_units(settings.important_max_epsilon_per_query, up=False)
    if cap > limit:
        raise InvalidRequest(
            f"dataset is classified important (重要): max_epsilon_per_query must be at most "
            f"{epsilon_text(limit)} (setting important_max_epsilon_per_query)",
            code="policy.important_epsilon_cap",
            rule="policy.important_epsilon_cap",
        )


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
    request.reason = _text(reason, "reason", MAX_REASON_LENGTH)
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
    policy = _owned_policy(session, principal, policy_id, dataset)
    notice_expiry(session, policy, now)
    if policy.status != PolicyStatus.ACTIVE.value:
        raise Conflict(f"policy {policy_id!r} is already {policy.status}", code="policy.not_active")
    policy.reason = _text(reason, "reason", MAX_REASON_LENGTH)
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


def _owned_policy(session: Session, principal: Principal, policy_id: str, dataset: DatasetRecord) -> Policy:
    """The policy (locked) on the owner's dataset; ``NotFound``/``InvalidRequest`` otherwise."""
    ensure_owner(principal, dataset)
    policy = session.scalar(select(Policy).where(Policy.id == policy_id).with_for_update())
    if policy is None or policy.dataset_owner != principal.organisation:
        raise NotFound(f"no policy {policy_id!r} on your datasets", code="policy.not_found")
    if policy.dataset != dataset.name:
        raise InvalidRequest(
            f"policy {policy_id!r} is on dataset {policy.dataset!r}, not {dataset.name!r}",
            code="policy.dataset_mismatch",
        )
    return policy


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
