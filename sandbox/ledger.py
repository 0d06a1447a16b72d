"""The privacy-budget ledger: exact units, budget views, query tickets and the query record.

Amounts are exact integers: epsilon in units of 1e-9, delta in units of 1e-15. Values come in as
floats and are converted through ``Decimal(str(x))``; charges round up, grants round down, so the
ledger can never hand out more than was granted.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from sandbox.policies.models import PolicyView

EPSILON_SCALE = 10**9
DELTA_SCALE = 10**15
MAX_EPSILON = 1_000_000.0


def _units(value: float, scale: int, *, up: bool) -> int:
    exact = Decimal(str(value)) * scale
    return int(exact.to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR))


def epsilon_units(value: float, *, up: bool) -> int:
    """Epsilon as integer units of 1e-9 (``up=True`` for charges, ``False`` for grants and caps)."""
    return _units(value, EPSILON_SCALE, up=up)


def delta_units(value: float, *, up: bool) -> int:
    """Delta as integer units of 1e-15 (``up=True`` for charges, ``False`` for grants and caps)."""
    return _units(value, DELTA_SCALE, up=up)


def epsilon_decimal(units: int) -> Decimal:
    """Exact epsilon of ``units``."""
    return Decimal(units) / EPSILON_SCALE


def delta_decimal(units: int) -> Decimal:
    """Exact delta of ``units``."""
    return Decimal(units) / DELTA_SCALE


def epsilon_float(units: int) -> float:
    """Epsilon of ``units`` as a float (for JSON views; exact for validated ranges)."""
    return float(epsilon_decimal(units))


def delta_float(units: int) -> float:
    """Delta of ``units`` as a float (for JSON views; exact for validated ranges)."""
    return float(delta_decimal(units))


def epsilon_text(units: int) -> str:
    """Exact epsilon of ``units`` as a plain decimal string (audit payloads, messages)."""
    return _plain(epsilon_decimal(units))


def delta_text(units: int) -> str:
    """Exact delta of ``units`` as a plain decimal string (audit payloads, messages)."""
    return _plain(delta_decimal(units))


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


class QueryStatus(StrEnum):
    """States of a recorded query."""

    RESERVED = "reserved"  # budget reserved, result not yet released (or the process died)
    ANSWERED = "answered"
    REPLAYED = "replayed"  # answered from the replay cache at no cost
    REJECTED = "rejected"
    FAILED = "failed"  # accepted, data read, execution failed: the charge is kept


class BudgetView(BaseModel):
    """One policy's budget as its organisation (or the dataset owner) sees it."""

    model_config = ConfigDict(frozen=True)

    policy_id: str
    organisation: str
    dataset: str
    status: str
    epsilon_granted: float
    epsilon_spent: float
    epsilon_reserved: float
    epsilon_remaining: float
    delta_granted: float
    delta_spent: float
    delta_reserved: float
    delta_remaining: float
    valid_until: datetime


class QueryTicket(BaseModel):
    """A reserved query: the pipeline runs it, then calls ``complete_query`` or ``fail_query``."""

    model_config = ConfigDict(frozen=True)

    query_id: str
    policy: PolicyView
    epsilon: float
    delta: float
    epsilon_remaining: float
    delta_remaining: float
    cached: bool = False


class CachedAnswer(BaseModel):
    """A replayed release: the stored answer of an identical earlier query, at no cost."""

    model_config = ConfigDict(frozen=True)

    query_id: str
    replay_of: str
    answer: dict[str, Any]
    policy: PolicyView
    epsilon: float = 0.0
    delta: float = 0.0
    epsilon_remaining: float
    delta_remaining: float
    cached: bool = True


class QueryView(BaseModel):
    """One recorded query (history): never its result values."""

    model_config = ConfigDict(frozen=True)

    id: str
    principal: str
    organisation: str | None
    dataset: str
    dataset_version: str | None
    policy_id: str | None
    sql: str
    fingerprint: str | None
    epsilon: float
    delta: float
    status: QueryStatus
    cached: bool
    replay_of: str | None
    rule: str | None
    error_code: str | None
    result_shape: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None
