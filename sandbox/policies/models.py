"""Frozen value objects of the access lifecycle and the policy engine (never ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from sandbox.errors import BudgetExhausted, PolicyDenied
from sandbox.query.summary import AggregateKind


class RequestStatus(StrEnum):
    """States of an access request."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  # by its organisation, before a decision
    EXPIRED = "expired"  # left pending longer than ``request_ttl_days``


class PolicyStatus(StrEnum):
    """States of a policy; only ``active`` ones allow queries."""

    ACTIVE = "active"
    REVOKED = "revoked"
    EXPIRED = "expired"


class AccessRequestView(BaseModel):
    """An organisation's request for access to a dataset."""

    model_config = ConfigDict(frozen=True)

    id: str
    organisation: str
    dataset: str
    dataset_owner: str
    requested_by: str
    purpose: str
    columns: tuple[str, ...]
    epsilon: float
    delta: float
    valid_from: datetime
    valid_until: datetime
    status: RequestStatus
    created_at: datetime
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    policy_id: str | None = None


class PolicyView(BaseModel):
    """An approved access policy: what one organisation may do on one dataset, and its budget."""

    model_config = ConfigDict(frozen=True)

    id: str
    request_id: str
    organisation: str
    dataset: str
    dataset_owner: str
    columns: tuple[str, ...]
    epsilon: float
    delta: float
    max_epsilon_per_query: float
    max_delta_per_query: float
    min_group_size: int
    aggregates: tuple[AggregateKind, ...]
    valid_from: datetime
    valid_until: datetime
    status: PolicyStatus
    approved_by: str
    approved_at: datetime
    ended_by: str | None = None
    ended_at: datetime | None = None
    reason: str | None = None

    def grants_column(self, table: str, column: str) -> bool:
        """Whether ``column`` of ``table`` is granted (as ``column`` or ``table.column``)."""
        granted = {c.lower() for c in self.columns}
        return column.lower() in granted or f"{table}.{column}".lower() in granted


BUDGET_RULES = frozenset(
    {
        "budget.epsilon_exhausted",
        "budget.delta_exhausted",
        "budget.lifetime_cap_exhausted",
        "budget.dataset_cap_exhausted",
    }
)


@dataclass(frozen=True)
class Decision:
    """The engine's verdict: allow, or deny with a stable rule id and a message saying what to change."""

    allowed: bool
    rule: str | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def allow(cls) -> Decision:
        """An allowing decision."""
        return cls(True)

    @classmethod
    def deny(cls, rule: str, message: str, **details: Any) -> Decision:
        """A denying decision with its rule id."""
        return cls(False, rule, message, dict(details))

    def error(self) -> PolicyDenied:
        """The error reporting this denial (``BudgetExhausted`` for budget rules)."""
        if self.allowed or self.rule is None:
            raise ValueError("an allowing decision has no error")
        kind = BudgetExhausted if self.rule in BUDGET_RULES else PolicyDenied
        return kind(self.rule, self.message, details=dict(self.details))
