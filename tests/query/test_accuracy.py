"""Accuracy promised before any data is read (accuracy.py), checked against simulated releases.

- A quantile's ``rank_error95``: over many draws of OpenDP's own noisy argmin on the exact scores
  (computed here from the data, independently of release.py), the released candidate's rank is
  within ``rank_error95`` rows of the best candidate's in at least 95% of draws.
- AVG at an assumed group size: the engine's answers fall within the estimated CI in at least 95%
  of repeated releases on a group of that size.
- ``ci=``: the derived epsilon reaches the target, and 1% less would not.
"""

from __future__ import annotations

import math
import random

import pyarrow as pa
import pytest
from query_support import DatasetMaker

from sandbox.catalog import DatasetRecord
from sandbox.errors import InvalidRequest
from sandbox.query import Engine, accuracy
from sandbox.query.plan import Quantity
from sandbox.query.rewrite import quantile_step

N = 2000
DRAWS = 1500


@pytest.fixture(scope="module")
def ages(make_dataset: DatasetMaker) -> tuple[DatasetRecord, list[int]]:
    generator = random.Random(7)
    values = [min(100, max(0, round(generator.gauss(45, 18)))) for _ in range(N)]
    columns = [
        {"name": "uid", "role": "privacy_unit"},
        {"name": "age", "role": "measure", "lower": 0, "upper": 100},
    ]
    record = make_dataset("accuracy_ages", pa.table({"uid": list(range(N)), "age": values}), columns)
    return record, values


@pytest.mark.parametrize(("q", "epsilon"), [(0.5, 0.05), (0.25, 0.02), (0.9, 0.1)])
def test_quantile_rank_error_covers(
    engine: Engine, ages: tuple[DatasetRecord, list[int]], q: float, epsilon: float
) -> None:
    record, values = ages
    plan = engine.plan(record.name, f"SELECT QUANTILE_CONT(age, {q}) FROM t", epsilon)
    (planned,) = [p for p in plan.quantities if p.quantity is Quantity.QUANTILE]
    assert planned.quantile is not None
    step = quantile_step(planned)
    candidates = [planned.bounds.lower + i * step for i in range(planned.candidates)]  # type: ignore[union-attr]
    weight_below = planned.quantile.denominator - planned.quantile.numerator
    weight_above = planned.quantile.numerator
    below = [sum(1 for v in values if v < c) for c in candidates]
    above = [sum(1 for v in values if v > c) for c in candidates]
    scores = [abs(weight_below * b - weight_above * a) for b, a in zip(below, above, strict=True)]
    best = min(range(len(scores)), key=scores.__getitem__)
    bound = accuracy.quantile_rank_error(planned)
    assert bound == pytest.approx(
        planned.calibration.scale * math.log(planned.candidates / 0.05) / planned.quantile.denominator
    )
    misses = 0
    for _ in range(DRAWS):
        chosen = int(planned.calibration.measurement(scores))
        if abs(below[chosen] - below[best]) > bound + 1e-9:
            misses += 1
    assert misses / DRAWS <= 0.05, (misses, bound)


def test_quantile_band_from_the_noisy_count_covers(
    engine: Engine, ages: tuple[DatasetRecord, list[int]]
) -> None:
    """With COUNT(age) released too, each answer carries the band of quantile levels [q - e, q + e];
    over repeated releases the released median's rank is within e·n rows of the best candidate's
    in at least 95% of them (the grid step is 1 here, so candidates are the ages themselves)."""
    record, values = ages
    sql = "SELECT MEDIAN(age) AS m, COUNT(age) AS n FROM t"
    assert engine.query(record.name, "SELECT MEDIAN(age) FROM t", 0.05).accuracy[0].quantile_band95 is None
    below = {c: sum(1 for v in values if v < c) for c in range(101)}
    best = min(range(101), key=lambda c: abs(below[c] - (N - below[c] - values.count(c))))
    misses = 0
    runs = 300
    for _ in range(runs):
        result = engine.query(record.name, sql, 0.05)
        ((median, _count),) = result.rows
        (band,) = result.accuracy[0].quantile_band95 or [None]
        assert band is not None and band[0] < 0.5 < band[1]
        if abs(below[round(median)] - below[best]) > (band[1] - 0.5) * N:
            misses += 1
    assert misses / runs <= 0.05


def test_avg_ci_at_an_assumed_group_size_covers(
    engine: Engine, ages: tuple[DatasetRecord, list[int]]
) -> None:
    """The estimate for group_size = N covers the engine's AVG released on N rows (>= 95%)."""
    record, values = ages
    sql = "SELECT AVG(age) FROM t"
    estimate = engine.estimate(record.name, sql, 0.05, group_size=N)
    half_width = estimate.aggregates[0]["ci95"]
    assert half_width is not None and half_width > 0
    truth = sum(values) / N
    runs = 300
    misses = sum(
        1 for _ in range(runs) if abs(engine.query(record.name, sql, 0.05).rows[0][0] - truth) > half_width
    )
    assert misses / runs <= 0.05
    smaller = engine.estimate(record.name, sql, 0.05, group_size=N // 10).aggregates[0]["ci95"]
    assert smaller == pytest.approx(10 * half_width)


@pytest.mark.parametrize(
    ("sql", "target", "group_size"),
    [
        ("SELECT COUNT(*) FROM t", 25.0, None),
        ("SELECT SUM(age), COUNT(*) FROM t", 2000.0, None),
        ("SELECT AVG(age) FROM t", 0.5, 2000),
        ("SELECT STDDEV(age) FROM t", 3.0, 2000),
    ],
)
def test_epsilon_for_ci_is_the_smallest_that_reaches_the_target(
    engine: Engine, ages: tuple[DatasetRecord, list[int]], sql: str, target: float, group_size: int | None
) -> None:
    record, _ = ages
    epsilon = engine.epsilon_for_ci(record, sql, target, group_size=group_size)

    def width(eps: float) -> float:
        value = engine.estimate(record.name, sql, eps, group_size=group_size).aggregates[0]["ci95"]
        assert value is not None
        return float(value)

    assert width(epsilon) <= target < width(epsilon * 0.99)
    assert float(f"{epsilon:.3g}") == epsilon  # three significant digits


def test_ratio_targets_need_a_group_size(engine: Engine, ages: tuple[DatasetRecord, list[int]]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        engine.epsilon_for_ci(ages[0], "SELECT VARIANCE(age) FROM t", 1.0)
    assert caught.value.code == "request.ci_needs_group_size"
