"""The value of a quantile and its 95% interval (quantiles.py), checked independently of the engine.

- The value's scores are re-derived here (``d · dist(q·N, [#(x < c), #(x ≤ c)])``) and equal the
  engine's; no neighbour moves them by more than the planned sensitivity; they are 0 exactly at the
  candidates that are q-quantiles, so at a huge epsilon the value is a q-quantile even when most rows
  are tied at a few values (where OpenDP's score prefers an empty candidate beside it).
- The ends' scores are re-derived here from the data (``d · dist(τ, [B_i, B_{i+1}])``) and equal the
  engine's; on every neighbour (one unit with up to ``k`` rows added) no score moves by more than the
  planned sensitivity ``k · max(n, d − n)``, so each end's loss is OpenDP's map at that sensitivity.
- Coverage: over many draws of OpenDP's own noisy argmin on those scores, ``[lower, upper]``
  contains a q-quantile of the data (``#(x < v) ≤ q·N ≤ #(x ≤ v)``) in at least 95% of draws, also on
  data built to defeat a rank-only argument (a heavy bucket next to an empty stretch of the grid).
- End to end: at a huge epsilon the interval brackets DuckDB's exact quantile within a grid step or
  two; the released ``ci95`` is the half-width around the value that covers the interval; a
  withheld group has no interval.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pyarrow as pa
import pytest
from query_support import HUGE_EPSILON, DatasetMaker, stored

from sandbox.catalog import Catalog
from sandbox.query import Engine, mechanisms, quantiles
from sandbox.query.plan import Bounds, PlannedQuantity, Quantity, sensitivity
from sandbox.query.rewrite import quantile_step

DRAWS = 2000


def planned(kind: Quantity, q: Fraction, k: int, epsilon: float, candidates: int = 21) -> PlannedQuantity:
    bounds = Bounds(0, 100, 0)
    calibration = mechanisms.noisy_max(sensitivity(Quantity.QUANTILE, k, 1, bounds, q), epsilon)
    return PlannedQuantity(kind, "v", calibration, q, bounds, candidates)


def grid(p: PlannedQuantity) -> list[int]:
    step = quantile_step(p)
    assert p.bounds is not None
    return [p.bounds.lower + i * step for i in range(p.candidates)]


def buckets(p: PlannedQuantity, values: list[int]) -> list[tuple[int, bool, int]]:
    """What the bucket statement of rewrite.py returns for ``values`` (one group)."""
    step = quantile_step(p)
    assert p.bounds is not None
    counted: dict[tuple[int, bool], int] = {}
    for v in values:
        key = ((v - p.bounds.lower) // step, (v - p.bounds.lower) % step == 0)
        counted[key] = counted.get(key, 0) + 1
    return [(b, on, n) for (b, on), n in counted.items()]


def reference_scores(p: PlannedQuantity, values: list[int], *, upper: bool) -> list[int]:
    """The ends' scores written out from the definition (docs/dp.md), not from quantiles.py."""
    assert p.quantile is not None
    d, n = p.quantile.denominator, p.quantile.numerator
    g = p.calibration.scale * math.log(p.candidates / 0.025)
    target = n * len(values) + (math.ceil(g) if upper else -math.ceil(g))
    cuts = grid(p)
    ranks = [sum(1 for v in values if v < c) for c in cuts] + [len(values)]
    scores = []
    for i in range(p.candidates):
        low = -math.inf if (i == 0 and not upper) else d * ranks[i]
        high = math.inf if (i == p.candidates - 1 and upper) else d * ranks[i + 1]
        scores.append(int(max(0, low - target, target - high)))
    return scores


def q_quantiles(values: list[int], q: Fraction) -> tuple[float, float]:
    """The smallest and largest v with #(x < v) <= qN <= #(x <= v) (they are data values)."""
    ordered = sorted(values)
    n = len(ordered)
    inside = [v for v in ordered if sum(x < v for x in ordered) <= q * n <= sum(x <= v for x in ordered)]
    return min(inside), max(inside)


def reference_value_scores(p: PlannedQuantity, values: list[int]) -> list[int]:
    """The value's scores written out from the definition (docs/dp.md), not from quantiles.py."""
    assert p.quantile is not None
    d, n = p.quantile.denominator, p.quantile.numerator
    target = n * len(values)
    return [
        max(0, d * sum(x < c for x in values) - target, target - d * sum(x <= c for x in values))
        for c in grid(p)
    ]


@pytest.mark.parametrize("q", [Fraction(1, 2), Fraction(1, 10), Fraction(3, 4)])
@pytest.mark.parametrize("k", [1, 3])
def test_value_scores_match_and_move_by_at_most_the_sensitivity(q: Fraction, k: int) -> None:
    generator = random.Random(7 * k + q.denominator)
    p = planned(Quantity.QUANTILE, q, k, 1.0)
    for _ in range(60):
        pool = [*generator.sample(range(0, 101, 5), 3), generator.randint(0, 100)]  # ties, mostly on the grid
        values = [generator.choice(pool) for _ in range(generator.randint(0, 30))]
        extra = [generator.choice([*pool, 0, 100, generator.randint(0, 100)]) for _ in range(k)]
        ours = quantiles.value_scores(p, *quantiles.histogram(p, buckets(p, values)))
        assert ours == reference_value_scores(p, values)
        zero = [c for c, score in zip(grid(p), ours, strict=True) if score == 0]
        if values:
            low_q, high_q = q_quantiles(values, q)
            assert all(low_q <= c <= high_q for c in zero)  # only q-quantiles score 0 ...
            assert {v for v in (low_q, high_q) if v % 5 == 0} <= set(zero)  # ... and those on the grid do
        neighbour = reference_value_scores(p, values + extra)
        moved = max(abs(a - b) for a, b in zip(ours, neighbour, strict=True))
        assert moved <= p.calibration.sensitivity == k * max(q.numerator, q.denominator - q.numerator)


@pytest.mark.parametrize("q", [Fraction(1, 2), Fraction(1, 10), Fraction(3, 4)])
@pytest.mark.parametrize("k", [1, 3])
def test_end_scores_match_and_move_by_at_most_the_sensitivity(q: Fraction, k: int) -> None:
    generator = random.Random(11 * k + q.denominator)
    for _ in range(40):
        values = [generator.randint(0, 100) for _ in range(generator.randint(0, 30))]
        extra = [generator.choice([0, 7, 50, 55, 100, generator.randint(0, 100)]) for _ in range(k)]
        for kind, upper in ((Quantity.QUANTILE_LOWER, False), (Quantity.QUANTILE_UPPER, True)):
            p = planned(kind, q, k, 1.0)
            counts, _, total = quantiles.histogram(p, buckets(p, values))
            ours = quantiles.end_scores(p, counts, total, upper=upper)
            assert ours == reference_scores(p, values, upper=upper)
            assert min(ours) == 0  # some slot always holds the target rank
            neighbour = reference_scores(p, values + extra, upper=upper)
            moved = max(abs(a - b) for a, b in zip(ours, neighbour, strict=True))
            assert moved <= p.calibration.sensitivity == k * max(q.numerator, q.denominator - q.numerator)
            assert p.calibration.measurement.map(p.calibration.sensitivity) == p.calibration.epsilon


DATA = {
    "spread": [round(random.Random(3).gauss(50, 15)) % 101 for _ in range(400)],
    # 20 rows low, 35 in one bucket at the median, 45 far above after an empty stretch: a target
    # rank of qN - R has no candidate near it, and a rank-only end would land above the median
    "heavy_bucket": [5] * 20 + [51] * 35 + [95] * 45,
    "tiny": [30, 60, 61],
}


@pytest.mark.parametrize("name", sorted(DATA))
@pytest.mark.parametrize("q", [Fraction(1, 2), Fraction(9, 10)])
def test_interval_covers_a_quantile(name: str, q: Fraction) -> None:
    values = DATA[name]
    low_q, high_q = q_quantiles(values, q)
    ends = {}
    for kind, is_upper in ((Quantity.QUANTILE_LOWER, False), (Quantity.QUANTILE_UPPER, True)):
        p = planned(kind, q, 1, 0.5)
        ends[is_upper] = (p, reference_scores(p, values, upper=is_upper), grid(p))
    misses = 0
    for _ in range(DRAWS):
        p, scores, cuts = ends[False]
        lower = cuts[int(p.calibration.measurement(scores))]
        p, scores, cuts = ends[True]
        index = int(p.calibration.measurement(scores)) + 1
        upper = min(cuts[index], 100) if index < len(cuts) else 100
        if not (min(lower, upper) <= high_q and max(lower, upper) >= low_q):
            misses += 1
    assert misses / DRAWS <= 0.05, misses


def test_interval_end_to_end(make_dataset: DatasetMaker, catalog: Catalog, engine: Engine) -> None:
    generator = random.Random(5)
    rows = [(uid, g, generator.randint(0, 1000)) for uid in range(3000) for g in [uid % 2]]
    record = make_dataset(
        "quantile_interval",
        pa.table({"uid": [r[0] for r in rows], "g": [r[1] for r in rows], "v": [r[2] for r in rows]}),
        [
            {"name": "uid", "role": "privacy_unit"},
            {"name": "g", "role": "dimension", "keys": [0, 1]},
            {"name": "v", "role": "measure", "lower": 0, "upper": 1000},
        ],
    )
    sql = "SELECT g, MEDIAN(v) AS m, QUANTILE_CONT(v, 0.9) AS p90 FROM t GROUP BY g ORDER BY g"
    result = engine.query(record.name, sql, HUGE_EPSILON)
    exact = stored(
        catalog, record.name, "SELECT g, MEDIAN(v), QUANTILE_CONT(v, 0.9) FROM t GROUP BY g ORDER BY g"
    )
    plan = engine.plan(record.name, sql, HUGE_EPSILON)
    step = quantile_step(next(p for p in plan.quantities if p.quantity is Quantity.QUANTILE))
    for column, accuracy in enumerate(result.accuracy, start=1):
        assert accuracy.interval95 is not None
        for row, interval, ci, truth in zip(
            result.rows, accuracy.interval95, accuracy.ci95, exact, strict=True
        ):
            assert interval is not None and ci is not None
            lower, upper = interval
            assert lower <= truth[column] <= upper and upper - lower <= 2 * step
            value = row[column]
            assert ci == max(value - lower, upper - value)

    withheld = engine.query(
        record.name, "SELECT g, MEDIAN(v) FROM t WHERE v < 0 GROUP BY g", 1.0, min_group_size=1000
    )
    assert withheld.accuracy[0].interval95 == [None, None] and withheld.accuracy[0].ci95 == [None, None]


def test_value_is_the_quantile_when_most_rows_are_tied(
    make_dataset: DatasetMaker, catalog: Catalog, engine: Engine
) -> None:
    """Half the rows at 2, 40% at 0: the median is 2 (OpenDP's score would prefer the 5% at 1)."""
    values = [0] * 400 + [1] * 50 + [2] * 500 + [3] * 50
    record = make_dataset(
        "quantile_ties",
        pa.table({"uid": list(range(len(values))), "v": values}),
        [{"name": "uid", "role": "privacy_unit"}, {"name": "v", "role": "measure", "lower": 0, "upper": 3}],
    )
    sql = "SELECT MEDIAN(v) AS m, QUANTILE_CONT(v, 0.42) AS q42 FROM t"
    [row] = engine.query(record.name, sql, HUGE_EPSILON).rows
    assert (
        list(row)
        == [2, 1]
        == list(stored(catalog, record.name, "SELECT MEDIAN(v), QUANTILE_DISC(v, 0.42) FROM t")[0])
    )
