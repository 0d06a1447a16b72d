"""Amending an active policy: top up, extend, narrow; recorded with old and new terms."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from sandbox.audit import chain
from sandbox.audit.models import EventType
from sandbox.budget import delta_text, epsilon_text
from sandbox.catalog.models import DatasetRecord
from sandbox.errors import Conflict, InvalidRequest
from sandbox.policies.checks import (
    canonical_columns,
    check_caps,
    delta_amount,
    epsilon_amount,
    owned_policy,
)
from sandbox.policies.models import PolicyStatus, PolicyView
from sandbox.policies.workflow import MAX_REASON_LENGTH, as_utc, notice_expiry, policy_view
from sandbox.principals import Principal
from sandbox.query.summary import AggregateKind
from sandbox.settings import Settings
from sandbox.store.models import Policy

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
    policy = owned_policy(session, principal, policy_id, dataset)
    notice_expiry(session, policy, now)
    if policy.status != PolicyStatus.ACTIVE.value:
        raise Conflict(f"policy {policy_id!r} is {policy.status}, not active", code="policy.not_active")
    old = _policy_terms(policy)
    if epsilon is not None:
        units = epsilon_amount(epsilon, "amend.invalid_epsilon")
        used = policy.epsilon_spent
        if units < used:
            raise InvalidRequest(
                f"epsilon {epsilon_text(units)} is below what the policy already spent "
                f"(queries still running included), "
                f"{epsilon_text(used)}: grant at least that",
                code="amend.below_spent",
            )
        policy.epsilon_granted = units
    if delta is not None:
        units = delta_amount(delta, "amend.invalid_delta")
        used = policy.delta_spent
        if units < used:
            raise InvalidRequest(
                f"delta {delta_text(units)} is below what the policy already spent "
                f"(queries still running included), "
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
        narrowed = canonical_columns(dataset, columns)
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
        policy.max_epsilon_per_query = epsilon_amount(max_epsilon_per_query, "amend.invalid_epsilon_cap")
    if max_delta_per_query is not None:
        policy.max_delta_per_query = delta_amount(max_delta_per_query, "amend.invalid_delta_cap")
    check_caps(settings, dataset, policy)
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
