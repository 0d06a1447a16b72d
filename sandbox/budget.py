"""Exact privacy-budget units and the budget state a query is checked against.

Amounts are exact integers: epsilon in units of 1e-9, delta in units of 1e-15. Values come in as
floats and are converted through ``Decimal(str(x))``; charges round up, grants and caps round
down, so the ledger can never hand out more than was granted. This module imports nothing of
the product: the policy engine, the workflow and the ledger all build on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum

EPSILON_SCALE = 10**9
DELTA_SCALE = 10**15
MAX_EPSILON = 1_000_000.0


class NewVersionBudget(StrEnum):
    """What a new version of a dataset does to its budget (the owner's choice at registration)."""

    CARRY = "carry"  # the new version is charged to the same lifetime ledger (the default)
    RENEW = "renew"  # a fresh ledger: only for data about new people or a new period


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


def optional_epsilon_text(units: int | None) -> str | None:
    """``epsilon_text`` of a cap that may be unset."""
    return None if units is None else epsilon_text(units)


def optional_delta_text(units: int | None) -> str | None:
    """``delta_text`` of a cap that may be unset."""
    return None if units is None else delta_text(units)


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


@dataclass(frozen=True)
class Allowance:
    """One account a query is charged to: a cap (``None``: no cap) and what is spent or reserved."""

    cap: int | None
    used: int

    def affords(self, units: int) -> bool:
        """Whether ``units`` more stay within the cap."""
        return self.cap is None or self.used + units <= self.cap

    @property
    def remaining(self) -> int | None:
        """Units left under the cap (``None``: no cap)."""
        return None if self.cap is None else max(self.cap - self.used, 0)


UNCAPPED = Allowance(None, 0)


@dataclass(frozen=True)
class BudgetState:
    """Every account a query is charged to, in exact integer units.

    ``epsilon_granted``/``delta_granted`` and ``*_used`` are the current policy's grant and what
    was spent or reserved under it. ``lifetime_*`` is the organisation's lifetime loss on the
    dataset across all its policies, past and present, under the owner's per-organisation
    lifetime cap; ``dataset_*`` the loss of all organisations under the dataset-wide cap.
    """

    epsilon_granted: int
    epsilon_used: int
    delta_granted: int
    delta_used: int
    lifetime_epsilon: Allowance = UNCAPPED
    lifetime_delta: Allowance = UNCAPPED
    dataset_epsilon: Allowance = UNCAPPED
    dataset_delta: Allowance = UNCAPPED

    @property
    def epsilon_remaining(self) -> int:
        """Epsilon units the organisation may still spend under its policy and lifetime cap.

        The dataset-wide cap is left out: what remains under it depends on other organisations'
        use, which an organisation must not learn.
        """
        return _least(self.epsilon_granted - self.epsilon_used, self.lifetime_epsilon)

    @property
    def delta_remaining(self) -> int:
        """Delta units the organisation may still spend under its policy and lifetime cap."""
        return _least(self.delta_granted - self.delta_used, self.lifetime_delta)


def _least(left: int, *allowances: Allowance) -> int:
    remaining = [a.remaining for a in allowances if a.remaining is not None]
    return max(min([left, *remaining]), 0)
