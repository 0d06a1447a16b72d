"""The checks of the access lifecycle: who owns a dataset, which columns and amounts are valid,
what a classification demands of a grant. Shared by the workflow's transitions and amendments."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.budget import MAX_EPSILON, delta_text, delta_units, epsilon_text, epsilon_units
from sandbox.catalog.models import Classification, DatasetRecord
from sandbox.errors import Forbidden, InvalidRequest, NotFound, PolicyDenied
from sandbox.principals import Principal, Role
from sandbox.settings import Settings
from sandbox.store.models import Policy


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


def refuse_core(dataset: DatasetRecord) -> None:
    """``PolicyDenied`` (``policy.core_dataset``) for a core (核心) dataset: never requested or granted."""
    if dataset.metadata.classification == Classification.CORE:
        raise PolicyDenied(
            "policy.core_dataset",
            f"dataset {dataset.name!r} is classified core (核心): it is listed in the catalogue only "
            "and access to it cannot be requested or granted",
        )


def checked_text(value: str, name: Literal["purpose", "reason"], limit: int) -> str:
    """``value`` stripped; ``InvalidRequest`` (``request.<name>_required``) unless 1..limit characters."""
    cleaned = value.strip()
    if not cleaned or len(cleaned) > limit:
        code = "request.purpose_required" if name == "purpose" else "request.reason_required"
        raise InvalidRequest(f"give a {name} of 1 to {limit} characters", code=code)
    return cleaned


def canonical_columns(dataset: DatasetRecord, columns: Iterable[str]) -> list[str]:
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


def epsilon_amount(value: float, code: str) -> int:
    """A granted epsilon in units (rounded down); ``InvalidRequest`` with ``code`` if out of range."""
    if not math.isfinite(value) or value <= 0 or value > MAX_EPSILON:
        raise InvalidRequest(f"epsilon must be greater than 0 and at most {MAX_EPSILON:g}", code=code)
    units = epsilon_units(value, up=False)
    if units <= 0:
        raise InvalidRequest("epsilon must be at least 1e-9", code=code)
    return units


def delta_amount(value: float, code: str) -> int:
    """A granted delta in units (rounded down); ``InvalidRequest`` with ``code`` if out of range."""
    if not math.isfinite(value) or value < 0 or value >= 1:
        raise InvalidRequest("delta must be at least 0 and below 1", code=code)
    return delta_units(value, up=False)


def check_caps(settings: Settings, dataset: DatasetRecord, policy: Policy) -> None:
    """An amended policy's per-query caps stay within its grant, the ceiling and its classification."""
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
        check_important(settings, policy.max_epsilon_per_query, policy.min_group_size)


def check_important(settings: Settings, cap: int, min_group_size: int) -> None:
    """What an important (重要) dataset demands of a grant: a minimum group size and a per-query cap."""
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


def owned_policy(session: Session, principal: Principal, policy_id: str, dataset: DatasetRecord) -> Policy:
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
