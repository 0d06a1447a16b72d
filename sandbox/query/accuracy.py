"""Accuracy a plan promises before any data is read, and the epsilon that buys a target accuracy.

Everything here is a function of the plan (mechanisms, scales, bounds) and of numbers the analyst
states (an assumed group size, a target half-width): never of the data.

- COUNT and SUM: the 95% half-width of the noise, from OpenDP's accuracy functions.
- AVG, VARIANCE, STDDEV: the half-width for an *assumed* group size ``n`` (the worst case over
  where the mean lies within the bounds); the released answer reports its own from the noisy count.
- Quantiles (exponential mechanism): a rank error (the 95% interval on the value depends on the
  data; the answer carries it, quantiles.py). With probability at least 95% the released
  candidate's score is within ``scale * ln(m / 0.05)`` of the best of the ``m`` candidates, and one
  row more or less below a candidate moves its score by the quantile's denominator ``d``: so its
  rank is within ``R = scale * ln(m / 0.05) / d`` rows of the best candidate's (docs/dp.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from sandbox import ranges
from sandbox.errors import InvalidRequest, QueryRejected
from sandbox.query.mechanisms import CONFIDENCE_ALPHA
from sandbox.query.plan import PlannedQuantity, Quantity, QueryPlan, needed_quantities
from sandbox.query.summary import AggregateKind
from sandbox.query.validate import AggregateSpec

ADDITIVE = frozenset({AggregateKind.COUNT, AggregateKind.COUNT_DISTINCT, AggregateKind.SUM})
RATIOS = frozenset({AggregateKind.AVG, AggregateKind.VARIANCE, AggregateKind.STDDEV})
SEARCH_STEPS = 80


@dataclass(frozen=True)
class Expected:
    """The expected accuracy of one aggregate: a 95% half-width, or a quantile's rank error."""

    ci95: float | None
    rank_error95: float | None
    note: str


def quantities_of(plan: QueryPlan, spec: AggregateSpec) -> list[PlannedQuantity]:
    """The planned quantities an aggregate is computed from, in ``needed_quantities`` order."""
    return [plan.planned(q, c, f, spec.condition) for q, c, f in needed_quantities(spec)]


def quantile_rank_error(planned: PlannedQuantity, alpha: float = CONFIDENCE_ALPHA) -> float:
    """Rows by which a released quantile's rank may miss the best candidate's, with confidence
    ``1 - alpha`` (95% by default)."""
    assert planned.quantile is not None
    candidates = max(planned.candidates, 2)
    gap = planned.calibration.scale * math.log(candidates / alpha)
    return gap / planned.quantile.denominator


def quantile_bands(
    plan: QueryPlan, spec: AggregateSpec, noisy: dict[str, list[float]]
) -> list[list[float] | None] | None:
    """Per group, the quantile levels ``[q - e, q + e]`` between which the released value lies with
    95% confidence (relative to the best grid candidate), when the query also releases the noisy
    non-NULL count of the same column and condition (``COUNT(col)``); None otherwise.

    ``e = R / max(1, n - h)``: the rank error ``R`` at 97.5% and the count's one-sided 97.5% lower
    bound (``h``, the half-width of its two-sided 95% CI), so both hold together with at least 95%.
    Computed from the plan and the noisy count only.
    """
    companion = next(
        (
            p
            for p in plan.quantities
            if p.quantity is Quantity.NONNULL and p.column == spec.column and p.condition == spec.condition
        ),
        None,
    )
    if companion is None or spec.quantile is None:
        return None
    planned = quantities_of(plan, spec)[0]
    rank = quantile_rank_error(planned, CONFIDENCE_ALPHA / 2)
    half_width = companion.calibration.ci95() or 0.0
    bands: list[list[float] | None] = []
    for count in noisy[companion.key]:
        error = rank / max(1.0, count - half_width)
        bands.append([max(0.0, spec.quantile - error), min(1.0, spec.quantile + error)])
    return bands


def expected(plan: QueryPlan, spec: AggregateSpec, group_size: int | None = None) -> Expected:
    """What ``spec``'s released value is expected to be off by (at 95%), from the plan alone."""
    quantities = quantities_of(plan, spec)
    if spec.kind is AggregateKind.QUANTILE:
        rank = quantile_rank_error(quantities[0])
        return Expected(
            None,
            rank,
            f"95%: the released value's rank is within ±{rank:.3g} rows of the best candidate; the "
            "answer also carries a 95% interval on the value (two more noisy runs in the same epsilon)",
        )
    if spec.kind in ADDITIVE:
        raw = quantities[0].calibration.ci95()
        unit = plan.bounds(spec.column).unit if spec.kind is AggregateKind.SUM and spec.column else 1.0
        return Expected(None if raw is None else raw * unit, None, "")
    if group_size is None:
        return Expected(None, None, "the CI depends on the group size: pass group_size= (docs/dp.md)")
    bounds = plan.bounds(spec.column or "")
    half_range = (bounds.upper - bounds.lower) / 2
    ci_sum = quantities[0].calibration.ci95() or 0.0
    ci_count = quantities[-1].calibration.ci95() or 0.0
    note = f"for an assumed group size of {group_size}, worst case over the mean's position"
    if spec.kind is AggregateKind.AVG:
        n = max(group_size, 1)
        return Expected((ci_sum / 2 + half_range * ci_count) / n * bounds.unit, None, note)
    n = max(group_size, 2)
    ci_sq = (quantities[1].calibration.ci95() or 0.0) * 2 ** quantities[1].shift
    ci_var = (ci_sq / 4 + half_range * ci_sum + 2 * half_range**2 * ci_count) / (n - 1)
    if spec.kind is AggregateKind.VARIANCE:
        return Expected(ci_var * bounds.unit**2, None, note)
    return Expected(math.sqrt(ci_var) * bounds.unit, None, note)


def primary_aggregate(plan: QueryPlan) -> AggregateSpec:
    """The first aggregate of the SELECT list: the one an accuracy target refers to."""
    output = next(o for o in plan.query.outputs if o.aggregate is not None)
    assert output.aggregate is not None
    return plan.query.aggregates[output.aggregate]


def epsilon_for_ci(
    make_plan: Callable[[float], QueryPlan], target: float, ceiling: float, group_size: int | None
) -> float:
    """The smallest epsilon (3 significant digits, rounded up) whose plan gives the primary
    aggregate a 95% half-width of at most ``target``; ``ceiling`` is the largest epsilon allowed."""
    if not (math.isfinite(target) and target > 0):
        raise InvalidRequest("ci must be a positive finite number.", code="request.ci")
    top = make_plan(ceiling)
    spec = primary_aggregate(top)
    if spec.kind is AggregateKind.QUANTILE:
        raise QueryRejected(
            "sql.ci_target_quantile",
            "ci= targets an additive 95% half-width; quantiles have a rank error instead. Put a "
            "COUNT, SUM, AVG, VARIANCE or STDDEV first in the SELECT list, or pass epsilon.",
        )
    if spec.kind in RATIOS and group_size is None:
        raise InvalidRequest(
            f"ci= on {spec.kind.value.upper()} needs an assumed group size: pass group_size= as well.",
            code="request.ci_needs_group_size",
        )

    def width(epsilon: float) -> float:
        ci = expected(make_plan(epsilon), spec, group_size).ci95
        assert ci is not None
        return ci

    best = width(ceiling)
    if best > target:
        raise InvalidRequest(
            f"a 95% half-width of {target:g} needs more than the service ceiling epsilon {ceiling:g} "
            f"(which gives ±{best:.4g}); ask for a wider ci.",
            code="request.ci_unreachable",
        )
    low, high = min(ranges.MIN_EPSILON, ceiling), ceiling
    if width(low) <= target:
        return low
    for _ in range(SEARCH_STEPS):
        middle = math.sqrt(low * high)
        low, high = (low, middle) if width(middle) <= target else (middle, high)
        if high / low < 1 + 1e-4:
            break
    rounded = _round_up(high)
    return rounded if rounded <= ceiling and width(rounded) <= target else high


def _round_up(value: float) -> float:
    """``value`` rounded up to three significant digits."""
    exponent = math.floor(math.log10(value)) - 2
    return round(math.ceil(value / 10.0**exponent) * 10.0**exponent, -exponent)
