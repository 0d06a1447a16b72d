"""The DP plan of a validated query: which noisy quantities, their sensitivity, epsilon share and
mechanism. Planning reads metadata only; its cost and accuracy are known before any data is read.

Sensitivities are for adding or removing one privacy unit, which contributes at most ``k`` rows
(enforced at ingest). Measures are stored clamped, in fixed-point units of ``10**-scale``.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from functools import cached_property
from typing import Any

from sqlglot import exp

from sandbox import ranges
from sandbox.errors import InvalidRequest, QueryRejected
from sandbox.query import keys, mechanisms
from sandbox.query.mechanisms import Calibration
from sandbox.query.shares import Shares
from sandbox.query.summary import AggregateKind, QuerySummary
from sandbox.query.validate import AggregateSpec, GroupKey, ValidatedQuery, fingerprint


class Quantity(StrEnum):
    """A noisy base quantity; every released aggregate is post-processing of these."""

    ROWS = "rows"  # COUNT(*)
    NONNULL = "nonnull"  # COUNT(col)
    UNITS = "units"  # COUNT(DISTINCT unit)
    SUM = "sum"  # SUM(col)
    CENTERED_SUM = "centered_sum"  # SUM(2x - (L + U))
    CENTERED_SUMSQ = "centered_sumsq"  # SUM((2x - (L + U))^2)
    QUANTILE = "quantile"  # argmin of quantile scores over a candidate grid
    QUANTILE_LOWER = "quantile_lower"  # lower end of the quantile's 95% interval (quantiles.py)
    QUANTILE_UPPER = "quantile_upper"  # upper end of the quantile's 95% interval


QUANTILES = frozenset({Quantity.QUANTILE, Quantity.QUANTILE_LOWER, Quantity.QUANTILE_UPPER})


class Grouping(StrEnum):
    """How output groups are chosen."""

    NONE = "none"  # one output row
    PUBLIC_KEYS = "public_keys"  # exactly the owner's declared keys (cross product)
    THRESHOLD = "threshold"  # DP partition selection (spends delta)


@dataclass(frozen=True)
class Bounds:
    """A measure's clamping bounds in fixed-point units."""

    lower: int
    upper: int
    scale: int

    @property
    def unit(self) -> float:
        """Value of one fixed-point unit."""
        return 10.0**-self.scale


@dataclass(frozen=True)
class PlannedQuantity:
    """One noisy base quantity with its calibration."""

    quantity: Quantity
    column: str | None
    calibration: Calibration
    quantile: Fraction | None = None
    bounds: Bounds | None = None
    candidates: int = 0
    shift: int = 0  # released in units of 2**shift (sums of squares can exceed int64)
    condition: str | None = None  # FILTER (WHERE ...) of a conditional aggregate (generated SQL)
    filter: exp.Expression | None = field(default=None, compare=False, hash=False, repr=False)

    @cached_property
    def key(self) -> str:
        """Canonical name of the quantity (computed once: the release looks quantities up by it)."""
        suffix = f", {self.quantile}" if self.quantile is not None else ""
        condition = "" if self.condition is None else f" filter (where {self.condition})"
        return f"{self.quantity.value}({self.column or '*'}{suffix}){condition}"

    def slot(self, prefix: str) -> str:
        """Name of an exact aggregate this quantity reads (``n``, ``u``, ``c_x``, ``s_x``, ``q_x``),
        distinct per FILTER condition."""
        name = prefix if self.column is None or prefix in ("n", "u") else f"{prefix}_{self.column}"
        if self.condition is None:
            return name
        return f"{name}#{hashlib.sha256(self.condition.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class QueryPlan:
    """Everything needed to execute and release a query, fixed before any data is read."""

    query: ValidatedQuery
    epsilon: float
    delta: float
    grouping: Grouping
    public_groups: tuple[tuple[Any, ...], ...]
    public_identities: tuple[tuple[str | None, ...], ...]  # DuckDB's text of each public group's keys
    quantities: tuple[PlannedQuantity, ...]
    selection: Calibration | None
    min_group_size: int
    epsilon_spent: float
    delta_spent: float
    summary: QuerySummary

    def planned(
        self,
        quantity: Quantity,
        column: str | None,
        quantile: Fraction | None = None,
        condition: str | None = None,
    ) -> PlannedQuantity:
        """The planned quantity of that kind, column (None for rows), quantile and condition."""
        column = None if quantity is Quantity.ROWS else column
        return next(
            p
            for p in self.quantities
            if p.quantity is quantity
            and p.column == column
            and p.quantile == quantile
            and p.condition == condition
        )

    def bounds(self, column: str) -> Bounds:
        """Fixed-point bounds of a measure column."""
        return measure_bounds(self.query, column)


def needed_quantities(spec: AggregateSpec) -> list[tuple[Quantity, str | None, Fraction | None]]:
    """The base quantities an aggregate is computed from."""
    column = spec.column
    if spec.kind is AggregateKind.COUNT:
        return [(Quantity.ROWS, None, None)] if column is None else [(Quantity.NONNULL, column, None)]
    if spec.kind is AggregateKind.COUNT_DISTINCT:
        return [(Quantity.UNITS, column, None)]
    if spec.kind is AggregateKind.SUM:
        return [(Quantity.SUM, column, None)]
    if spec.kind is AggregateKind.AVG:
        return [(Quantity.CENTERED_SUM, column, None), (Quantity.NONNULL, column, None)]
    if spec.kind in (AggregateKind.VARIANCE, AggregateKind.STDDEV):
        return [
            (Quantity.CENTERED_SUM, column, None),
            (Quantity.CENTERED_SUMSQ, column, None),
            (Quantity.NONNULL, column, None),
        ]
    assert spec.quantile is not None
    q = quantile_fraction(spec.quantile)
    return [
        (Quantity.QUANTILE, column, q),
        (Quantity.QUANTILE_LOWER, column, q),
        (Quantity.QUANTILE_UPPER, column, q),
    ]


def quantile_fraction(q: float) -> Fraction:
    """The quantile as a fraction with denominator at most 1000 (the score's integer weights)."""
    return Fraction(q).limit_denominator(1000)


def measure_bounds(query: ValidatedQuery, column: str) -> Bounds:
    """Clamping bounds of ``column`` in its stored fixed-point units, as ingest recorded them."""
    stored = query.stored.column(column)
    assert stored is not None
    assert stored.clamped_lower is not None and stored.clamped_upper is not None
    return Bounds(stored.clamped_lower, stored.clamped_upper, stored.clamped_scale)


def sensitivity(
    quantity: Quantity, k: int, groups: int | None, bounds: Bounds | None, q: Fraction | None
) -> int:
    """L1 sensitivity over all groups (L-inf per group for quantile scores), in stored units."""
    touched = k if groups is None else min(k, groups)
    if quantity in (Quantity.ROWS, Quantity.NONNULL):
        return k
    if quantity is Quantity.UNITS:
        return touched
    assert bounds is not None
    if quantity is Quantity.SUM:
        return k * max(abs(bounds.lower), abs(bounds.upper))
    if quantity is Quantity.CENTERED_SUM:
        return k * (bounds.upper - bounds.lower)
    if quantity is Quantity.CENTERED_SUMSQ:
        return k * (bounds.upper - bounds.lower) ** 2
    assert q is not None
    return k * max(q.numerator, q.denominator - q.numerator)


SQUARES_BITS = 24


def squares_shift(sensitivity: int) -> int:
    """Bits dropped from a sum of squares so its sensitivity keeps about ``SQUARES_BITS`` bits.

    Releasing ``floor(S / 2**shift)`` keeps the value in int64 for any realistic table while the
    dropped precision stays far below the noise (whose scale is at least the shifted sensitivity).
    """
    return max(0, sensitivity.bit_length() - SQUARES_BITS)


def shifted_sensitivity(sensitivity: int, shift: int, touched: int) -> int:
    """L1 sensitivity of the ``floor(S_g / 2**shift)`` values of all groups.

    A unit moves the groups' S_g by d_g with sum(d_g) <= ``sensitivity`` over at most ``touched``
    groups; each floor moves by at most ``(d_g >> shift) + 1``, so the total is at most
    ``(sensitivity >> shift) + touched``.
    """
    return sensitivity if shift == 0 else (sensitivity >> shift) + touched


def build_plan(
    query: ValidatedQuery,
    epsilon: float,
    delta: float,
    *,
    min_group_size: int,
    max_key_cells: int,
    quantile_candidates: int,
    mechanism: str = "laplace",
) -> QueryPlan:
    """Split ``epsilon`` (and ``delta``) across the query's base quantities and calibrate each."""
    check_budget_request(epsilon, delta)
    k = query.max_rows_per_unit
    grouping, public_groups, public_identities = _grouping(query, delta, max_key_cells)
    wanted: list[tuple[Quantity, str | None, Fraction | None, str | None]] = []
    filters: dict[str, exp.Expression] = {}
    for spec in query.aggregates:
        if spec.condition is not None and spec.filter is not None:
            filters[spec.condition] = spec.filter
        for quantity, column, q in needed_quantities(spec):
            item = (quantity, None if quantity is Quantity.ROWS else column, q, spec.condition)
            if item not in wanted:
                wanted.append(item)
    needs_rows = grouping is Grouping.THRESHOLD or min_group_size > 0
    if needs_rows and (Quantity.ROWS, None, None, None) not in wanted:
        wanted.append((Quantity.ROWS, None, None, None))

    groups = (
        len(public_groups) if grouping is Grouping.PUBLIC_KEYS else (1 if grouping is Grouping.NONE else None)
    )
    touched = 1 if groups == 1 else (k if groups is None else min(k, groups))
    budget = Shares.split(mechanism, epsilon, delta, len(wanted), grouping is Grouping.THRESHOLD)
    planned: list[PlannedQuantity] = []
    selection: Calibration | None = None
    for quantity, column, q, condition in wanted:
        filter_ = filters.get(condition) if condition is not None else None
        bounds = (
            measure_bounds(query, column)
            if quantity not in (Quantity.ROWS, Quantity.NONNULL, Quantity.UNITS) and column is not None
            else None
        )
        delta_ = sensitivity(quantity, k, groups, bounds, q)
        candidates = 0
        if quantity is Quantity.ROWS and grouping is Grouping.THRESHOLD and condition is None:
            selection = mechanisms.laplace_threshold(k, budget.selection_epsilon, budget.selection_delta)
            calibration = selection
        elif quantity in QUANTILES:
            calibration = mechanisms.noisy_max(delta_, budget.pure_epsilon(touched))
            assert bounds is not None
            candidates = min(quantile_candidates, bounds.upper - bounds.lower + 1)
        else:
            shift = squares_shift(delta_) if quantity is Quantity.CENTERED_SUMSQ else 0
            calibration = budget.additive(shifted_sensitivity(delta_, shift, touched))
            planned.append(
                PlannedQuantity(
                    quantity, column, calibration, q, bounds, shift=shift, condition=condition, filter=filter_
                )
            )
            continue
        planned.append(
            PlannedQuantity(
                quantity, column, calibration, q, bounds, candidates, condition=condition, filter=filter_
            )
        )
    budget.check([(p.calibration, touched if p.quantity in QUANTILES else 1) for p in planned], selection)
    # delta is charged only when the plan spends it: partition selection or Gaussian noise
    delta_spent = delta if selection is not None or mechanism == "gaussian" else 0.0

    summary = QuerySummary(
        dataset=query.record.name,
        dataset_version=query.record.registration_id,
        table=query.table.name,
        columns=query.columns_used,
        aggregates=frozenset(s.kind for s in query.aggregates),
        # the declared columns grouped by: an expression key's output name (``... AS band``) and a
        # joined column's internal name (joins.py) are not; their columns are in ``columns``
        group_by=tuple(g.name for g in query.group_keys if g.name in query.columns_used),
        epsilon=epsilon,
        delta=delta_spent,
        normalized_sql=query.normalized_sql,
        fingerprint=fingerprint(
            query.record.name,
            query.record.registration_id,
            query.normalized_sql,
            repr(epsilon),
            repr(delta),
            str(min_group_size),
            mechanism,
            # only when given, so that the fingerprints (replays) of other queries stay as they were
            *([] if query.requested_bound is None else [f"max_joined_rows_per_unit={query.requested_bound}"]),
        ),
        max_joined_rows_per_unit=query.requested_bound,
    )
    return QueryPlan(
        query=query,
        epsilon=epsilon,
        delta=delta,
        grouping=grouping,
        public_groups=tuple(public_groups),
        public_identities=tuple(public_identities),
        quantities=tuple(planned),
        selection=selection,
        min_group_size=min_group_size,
        epsilon_spent=epsilon,
        delta_spent=delta_spent,
        summary=summary,
    )


def check_budget_request(epsilon: float, delta: float) -> None:
    """Epsilon and delta must be numbers within the sane ranges (``sandbox.ranges``); the per-query
    epsilon ceiling is the ``max_epsilon_per_query`` setting, checked by the engine."""
    if not (
        isinstance(epsilon, int | float)
        and not isinstance(epsilon, bool)
        and math.isfinite(epsilon)
        and epsilon >= ranges.MIN_EPSILON
    ):
        raise InvalidRequest(
            f"epsilon must be a finite number of at least {ranges.MIN_EPSILON:g}.", code="request.epsilon"
        )
    if not (
        isinstance(delta, int | float) and not isinstance(delta, bool) and 0 <= delta <= ranges.MAX_DELTA
    ):
        raise InvalidRequest(f"delta must be a number from 0 to {ranges.MAX_DELTA:g}.", code="request.delta")


def _grouping(
    query: ValidatedQuery, delta: float, max_cells: int
) -> tuple[Grouping, list[tuple[Any, ...]], list[tuple[str | None, ...]]]:
    if not query.group_keys:
        return Grouping.NONE, [()], [()]
    if all(g.public_keys is not None for g in query.group_keys):
        cells = math.prod(len(g.public_keys or ()) for g in query.group_keys)
        if cells > max_cells:
            raise QueryRejected(
                "sql.too_many_groups",
                f"GROUP BY would produce {cells} public key combinations; the limit is {max_cells}. "
                "Group by fewer columns.",
            )
        texts = [_identities(query, g) for g in query.group_keys]
        return (
            Grouping.PUBLIC_KEYS,
            list(itertools.product(*(g.public_keys or () for g in query.group_keys))),
            list(itertools.product(*texts)),
        )
    if delta <= 0:
        missing = ", ".join(g.name for g in query.group_keys if g.public_keys is None)
        raise QueryRejected(
            "sql.group_keys_need_delta",
            f"GROUP BY {missing} has no public key list, so groups must be selected privately: "
            "pass delta > 0 (e.g. 1e-6), or group by columns with public keys.",
        )
    return Grouping.THRESHOLD, [], []


def _identities(query: ValidatedQuery, group: GroupKey) -> tuple[str | None, ...]:
    """DuckDB's text of each public key of a group key (a column, a joined column or a histogram
    bin, whose SQL yields ``key_type``), in the owner's order."""
    assert group.public_keys is not None and group.key_type is not None
    return keys.identities(group.key_type, group.public_keys)
