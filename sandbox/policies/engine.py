"""The policy engine: a pure function from (principal, dataset, policy, query, budget, time) to a decision.

It performs no IO and never looks at data. Each denial carries a stable rule id and a message
saying what to change; amounts are compared as exact integer units (see ``sandbox.budget``).
"""

from __future__ import annotations

from datetime import datetime

from sandbox.budget import BudgetState, delta_text, delta_units, epsilon_text, epsilon_units
from sandbox.catalog.models import Classification, DatasetRecord
from sandbox.policies.models import Decision, PolicyStatus, PolicyView
from sandbox.principals import Principal, Role
from sandbox.query.summary import QuerySummary


def decide(  # noqa: PLR0917 - the engine's documented positional signature
    principal: Principal,
    dataset: DatasetRecord,
    policy: PolicyView | None,
    summary: QuerySummary,
    budget: BudgetState,
    now: datetime,
    *,
    charge: bool = True,
) -> Decision:
    """Allow the query, or deny it with the first rule it breaks.

    ``policy`` is the organisation's current policy on the dataset (active, or the latest ended
    one so the denial can say why). ``charge=False`` skips the budget rules (a replay costs nothing).
    """
    for decision in (
        check_access(principal, dataset, policy, now),
        check_query(policy, summary),
        check_budget(summary, budget, dataset.name) if charge else Decision.allow(),
    ):
        if not decision.allowed:
            return decision
    return Decision.allow()


def check_access(
    principal: Principal, dataset: DatasetRecord, policy: PolicyView | None, now: datetime
) -> Decision:
    """Whether the principal's organisation may query the dataset at all at ``now``."""
    if not principal.has(Role.ANALYST) or not principal.organisation:
        return Decision.deny(
            "policy.not_analyst",
            "only analysts of an authorised organisation may query datasets; "
            "ask the operator to add you as an analyst of your organisation",
        )
    if dataset.metadata.classification == Classification.CORE:
        return Decision.deny(
            "policy.core_dataset",
            f"dataset {dataset.name!r} is classified core (核心): it is listed in the catalogue only "
            "and can never be queried",
        )
    if policy is None or policy.organisation != principal.organisation or policy.dataset != dataset.name:
        return Decision.deny(
            "policy.no_active_policy",
            f"organisation {principal.organisation!r} has no approved policy on dataset {dataset.name!r}: "
            "request access first and wait for the owner's approval",
        )
    if policy.status == PolicyStatus.REVOKED:
        return Decision.deny(
            "policy.revoked",
            f"the owner revoked policy {policy.id} on dataset {dataset.name!r}"
            + (f" ({policy.reason})" if policy.reason else "")
            + ": request access again",
            policy_id=policy.id,
        )
    if policy.status == PolicyStatus.EXPIRED or now >= policy.valid_until:
        return Decision.deny(
            "policy.expired",
            f"policy {policy.id} on dataset {dataset.name!r} expired at {policy.valid_until.isoformat()}: "
            "request access again",
            policy_id=policy.id,
            valid_until=policy.valid_until.isoformat(),
        )
    if now < policy.valid_from:
        return Decision.deny(
            "policy.not_yet_valid",
            f"policy {policy.id} on dataset {dataset.name!r} is valid from {policy.valid_from.isoformat()}: "
            "query again then",
            policy_id=policy.id,
            valid_from=policy.valid_from.isoformat(),
        )
    return Decision.allow()


def check_query(policy: PolicyView | None, summary: QuerySummary) -> Decision:
    """Whether the query stays within the policy's columns, aggregates and per-query caps."""
    if policy is None:
        return Decision.deny("policy.no_active_policy", "no policy to check the query against")
    used = sorted(set(summary.columns) | set(summary.group_by), key=str.lower)
    missing = [c for c in used if not policy.grants_column(summary.table, c)]
    if missing:
        return Decision.deny(
            "policy.column_not_granted",
            f"column(s) {', '.join(missing)} of table {summary.table!r} are not granted by policy "
            f"{policy.id}; granted: {', '.join(policy.columns)}. Remove them or request access to them",
            columns=missing,
            granted=list(policy.columns),
        )
    refused = sorted(a.value for a in summary.aggregates if a not in policy.aggregates)
    if refused:
        allowed = ", ".join(a.value for a in policy.aggregates)
        return Decision.deny(
            "policy.aggregate_not_allowed",
            f"aggregate(s) {', '.join(refused)} are not allowed by policy {policy.id}; allowed: {allowed}",
            aggregates=refused,
            allowed=[a.value for a in policy.aggregates],
        )
    requested = epsilon_units(summary.epsilon, up=True)
    cap = epsilon_units(policy.max_epsilon_per_query, up=False)
    if requested > cap:
        return Decision.deny(
            "policy.epsilon_per_query_cap",
            f"requested epsilon {epsilon_text(requested)} exceeds the per-query cap {epsilon_text(cap)} "
            f"of policy {policy.id} by {epsilon_text(requested - cap)}: lower epsilon to at most "
            f"{epsilon_text(cap)}",
            requested=epsilon_text(requested),
            cap=epsilon_text(cap),
            difference=epsilon_text(requested - cap),
        )
    requested = delta_units(summary.delta, up=True)
    cap = delta_units(policy.max_delta_per_query, up=False)
    if requested > cap:
        return Decision.deny(
            "policy.delta_per_query_cap",
            f"requested delta {delta_text(requested)} exceeds the per-query cap {delta_text(cap)} "
            f"of policy {policy.id} by {delta_text(requested - cap)}: "
            f"lower delta to at most {delta_text(cap)}",
            requested=delta_text(requested),
            cap=delta_text(cap),
            difference=delta_text(requested - cap),
        )
    return Decision.allow()


def check_budget(summary: QuerySummary, budget: BudgetState, dataset: str) -> Decision:
    """Whether the policy's grant, the organisation's lifetime cap and the dataset-wide cap afford it."""
    epsilon = epsilon_units(summary.epsilon, up=True)
    delta = delta_units(summary.delta, up=True)
    left = max(budget.epsilon_granted - budget.epsilon_used, 0)
    if epsilon > left:
        return Decision.deny(
            "budget.epsilon_exhausted",
            f"requested epsilon {epsilon_text(epsilon)} exceeds the remaining budget "
            f"{epsilon_text(left)} of your policy on dataset {dataset!r} by {epsilon_text(epsilon - left)}: "
            f"lower epsilon to at most {epsilon_text(left)} or ask the owner to amend the policy",
            requested=epsilon_text(epsilon),
            remaining=epsilon_text(left),
            difference=epsilon_text(epsilon - left),
        )
    left = max(budget.delta_granted - budget.delta_used, 0)
    if delta > left:
        return Decision.deny(
            "budget.delta_exhausted",
            f"requested delta {delta_text(delta)} exceeds the remaining delta budget "
            f"{delta_text(left)} of your policy on dataset {dataset!r} by {delta_text(delta - left)}: "
            f"lower delta to at most {delta_text(left)} or ask the owner to amend the policy",
            requested=delta_text(delta),
            remaining=delta_text(left),
            difference=delta_text(delta - left),
        )
    lifetime = f"your organisation's lifetime cap on {dataset!r} (all its policies, past and present)"
    for cap, units, text in (
        (budget.lifetime_epsilon, epsilon, epsilon_text),
        (budget.lifetime_delta, delta, delta_text),
    ):
        if not cap.affords(units):
            name = "epsilon" if text is epsilon_text else "delta"
            remaining = cap.remaining or 0
            return Decision.deny(
                "budget.lifetime_cap_exhausted",
                f"requested {name} {text(units)} exceeds what remains under {lifetime}, "
                f"{text(remaining)}, by {text(units - remaining)}: lower {name} to at most "
                f"{text(remaining)} or ask the owner to raise the cap",
                requested=text(units),
                remaining=text(remaining),
                difference=text(units - remaining),
            )
    if not (budget.dataset_epsilon.affords(epsilon) and budget.dataset_delta.affords(delta)):
        return Decision.deny(
            "budget.dataset_cap_exhausted",
            f"the owner's dataset-wide budget cap on {dataset!r} (shared by all organisations) cannot "
            f"afford epsilon {epsilon_text(epsilon)}, delta {delta_text(delta)}: lower them or ask the owner",
            requested_epsilon=epsilon_text(epsilon),
            requested_delta=delta_text(delta),
        )
    return Decision.allow()
