"""Quantiles: exponential-mechanism scores over the candidate grid, for the value and its 95% interval.

The candidates ``c_i = L + i · step`` (``i < m``) are public (derived from the bounds). DuckDB gives
per group the rows per bucket ``[c_i, c_{i+1})`` (rewrite.py); with ``B_i = #(x < c_i)`` and ``N``
the group's non-NULL rows, and ``q = n/d``:

- the **value** (``quantile``) is the noisy argmin of ``d · dist(q·N, [#(x < c_i), #(x ≤ c_i)])``:
  0 exactly at the candidates that are q-quantiles of the group. Without rows on a candidate this is
  OpenDP's score ``|(d − n)·#(x < c_i) − n·#(x > c_i)|``; OpenDP's counts the rows tied at a
  candidate on neither side, so with many ties it can prefer an empty candidate beside the quantile;
- the **lower end** (``quantile_lower``) is a second noisy argmin, over slots ``i`` whose rank
  ranges ``[B_i, B_{i+1}]`` (slot 0 open below) tile every rank: the score of slot ``i`` is
  ``d · dist(τ, [B_i, B_{i+1}])`` with the target ``τ = q·N − S/d``, and the slot's value is
  ``c_i``. Some slot always scores 0, so with probability at least 97.5% the released slot scores at
  most ``g = scale · ln(m / 0.025) ≤ S``; that means ``B_j ≤ q·N``, so ``c_j`` is not above every
  q-quantile of the group (slot 0 is ``L``, below all of them);
- the **upper end** (``quantile_upper``) mirrors it: target ``q·N + S/d``, the last slot open above,
  value ``c_{j+1}`` (``U`` for the last slot); with probability at least 97.5% ``B_{j+1} ≥ q·N``, so
  it is not below every q-quantile.

Together, with probability at least 95%, ``[lower, upper]`` contains a q-quantile of the group (a
value ``v`` with ``#(x < v) ≤ q·N ≤ #(x ≤ v)``: one of the group's values when ``q·N`` is not
whole). A row moves each score by at most ``max(n, d − n)``: below ``c_i`` it moves both ends of the
rank range by ``d`` and the target ``n·N`` by ``n``; on ``c_i`` the upper end by ``d`` and the target
by ``n``; above it the target alone. So the value and each end cost one run of that sensitivity
(plan.py). ``S`` depends on the plan only; every released value and end is OpenDP's noisy argmin
(docs/dp.md).
"""

from __future__ import annotations

import math
from dataclasses import replace

from sandbox.query import mechanisms
from sandbox.query.mechanisms import CONFIDENCE_ALPHA
from sandbox.query.plan import PlannedQuantity, Quantity
from sandbox.query.rewrite import quantile_step

Buckets = list[tuple[int, bool, int]]  # (bucket, on the grid, rows) per bucket of one group


def interval_shift(planned: PlannedQuantity) -> int:
    """``S``: the score gap that a released end exceeds with probability at most 2.5%."""
    gap = planned.calibration.scale * math.log(max(planned.candidates, 2) / (CONFIDENCE_ALPHA / 2))
    return math.ceil(gap)


def histogram(planned: PlannedQuantity, buckets: Buckets) -> tuple[list[int], list[int], int]:
    """Rows per candidate bucket, rows exactly on each candidate, and the group's non-NULL rows."""
    counts = [0] * planned.candidates
    on_grid = [0] * planned.candidates
    total = 0
    for bucket, exact_hit, n in buckets:
        total += n
        index = min(max(bucket, 0), planned.candidates)
        if index < planned.candidates:
            counts[index] += n
            if exact_hit:
                on_grid[index] += n
    return counts, on_grid, total


def value_scores(planned: PlannedQuantity, counts: list[int], on_grid: list[int], total: int) -> list[int]:
    """``d · dist(q·N, [#(x < c_i), #(x ≤ c_i)])`` per candidate, in integer form: 0 exactly when
    ``c_i`` is a q-quantile of the group, however many rows are tied at it."""
    assert planned.quantile is not None
    d, n = planned.quantile.denominator, planned.quantile.numerator
    target = n * total
    scores = []
    below = 0
    for i in range(planned.candidates):
        scores.append(max(0, d * below - target, target - d * (below + on_grid[i])))
        below += counts[i]
    return scores


def end_scores(planned: PlannedQuantity, counts: list[int], total: int, *, upper: bool) -> list[int]:
    """``d · dist(τ, [B_i, B_{i+1}])`` per slot, in integer form (``τ·d = n·N ∓ S``)."""
    assert planned.quantile is not None
    d, n = planned.quantile.denominator, planned.quantile.numerator
    shift = interval_shift(planned)
    target = n * total + shift if upper else n * total - shift
    last = planned.candidates - 1
    scores = []
    below = 0
    for i in range(planned.candidates):
        low, high = d * below, d * (below + counts[i])  # slot i: ranks [B_i, B_{i+1}], times d
        above_gap = 0 if (i == 0 and not upper) else low - target
        below_gap = 0 if (i == last and upper) else target - high
        scores.append(max(0, above_gap, below_gap))
        below += counts[i]
    return scores


def buckets_key(planned: PlannedQuantity) -> str:
    """The quantity whose bucket counts DuckDB computed: the value's (the ends read the same)."""
    return replace(planned, quantity=Quantity.QUANTILE).key


def release(planned: PlannedQuantity, buckets: Buckets) -> float:
    """The noisy value, lower or upper end (by ``planned.quantity``) of one group's quantile."""
    assert planned.bounds is not None
    counts, on_grid, total = histogram(planned, buckets)
    if planned.quantity is Quantity.QUANTILE:
        scores = value_scores(planned, counts, on_grid, total)
    else:
        scores = end_scores(planned, counts, total, upper=planned.quantity is Quantity.QUANTILE_UPPER)
    index = mechanisms.release_argmin(planned.calibration, scores)
    if planned.quantity is Quantity.QUANTILE_UPPER:
        index += 1
    step = quantile_step(planned)
    # the grid's last candidate may pass the upper bound when the step was rounded up
    return min(planned.bounds.lower + index * step, planned.bounds.upper) * planned.bounds.unit
