"""Issue 12's query shapes: histogram bins over measures and conditional aggregates.

For each shape: at a huge epsilon the answer equals plain DuckDB on the stored (bounded, clamped)
table; on neighbouring datasets D and D' (one person added, at the extremes) the outcome, the
released key set and the charge are the same; and the privacy loss is re-derived here from the
metadata and OpenDP's own maps, independently of plan.py.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pyarrow as pa
import pytest
from query_support import HUGE_EPSILON, DatasetMaker, stored

from sandbox.catalog import Catalog, DatasetRecord
from sandbox.errors import QueryRejected
from sandbox.query import Engine, mechanisms
from sandbox.query.plan import Grouping

K = 3  # rows per person in the visits-like table
COLUMNS: list[dict[str, Any]] = [
    {"name": "uid", "role": "privacy_unit"},
    {"name": "sex", "role": "dimension", "keys": ["F", "M"]},
    {"name": "kind", "role": "dimension"},
    {"name": "age", "role": "measure", "lower": 0, "upper": 100},
    {"name": "cost", "role": "measure", "lower": 0, "upper": 5000, "scale": 2},
]


def rows(n: int, seed: int) -> dict[str, list[Any]]:
    generator = random.Random(seed)
    data: dict[str, list[Any]] = {"uid": [], "sex": [], "kind": [], "age": [], "cost": []}
    for uid in range(n):
        for _ in range(generator.randint(1, K)):
            data["uid"].append(uid)
            data["sex"].append(generator.choice("FM"))
            data["kind"].append(generator.choice(["out", "in", "er"]))
            data["age"].append(generator.choice([None, *range(-5, 111)]))
            data["cost"].append(round(generator.uniform(-10, 6000), 2))
    return data


def with_extreme_person(data: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """D': one more person with K rows at the bounds' edges, beyond them, NULL, and a new kind."""
    extra: dict[str, list[Any]] = {
        "uid": [10**6] * K,
        "sex": ["M", "F", None],
        "kind": ["new", "in", "er"],
        "age": [100, None, 250],
        "cost": [5000.0, 4999.995, 1e9],
    }
    return {name: [*values, *extra[name]] for name, values in data.items()}


def table(data: dict[str, list[Any]]) -> pa.Table:
    return pa.table(
        {
            "uid": pa.array(data["uid"], pa.int64()),
            "sex": pa.array(data["sex"], pa.string()),
            "kind": pa.array(data["kind"], pa.string()),
            "age": pa.array(data["age"], pa.int64()),
            "cost": pa.array(data["cost"], pa.float64()),
        }
    )


@pytest.fixture(scope="module")
def neighbours(make_dataset: DatasetMaker) -> tuple[DatasetRecord, DatasetRecord]:
    data = rows(400, seed=12)
    d = make_dataset("shapes_d", table(data), COLUMNS, max_rows_per_unit=K)
    d_prime = make_dataset("shapes_d_prime", table(with_extreme_person(data)), COLUMNS, max_rows_per_unit=K)
    return d, d_prime


# (engine SQL, plain SQL over the stored table with clamped fixed-point columns) — same question
EXACT = [
    (
        "SELECT FLOOR(age / 10) * 10 AS band, COUNT(*) AS n, AVG(cost) FROM t GROUP BY band",
        "SELECT floor(age__clamped / 10) * 10, count(*), avg(cost__clamped / 100) FROM t "
        "WHERE age__clamped IS NOT NULL GROUP BY 1",
    ),
    (
        "SELECT FLOOR(cost / 250) AS b, sex, SUM(age) FROM t GROUP BY 1, 2",
        "SELECT floor(cost__clamped / 100 / 250), sex, sum(age__clamped) FROM t "
        "WHERE sex IS NOT NULL GROUP BY 1, 2",
    ),
    (
        "SELECT WIDTH_BUCKET(cost, 1000, 4000, 6) AS b, COUNT(*) FROM t GROUP BY b",
        "SELECT CASE WHEN cost__clamped < 100000 THEN 0 WHEN cost__clamped >= 400000 THEN 7 "
        "ELSE floor(6 * (cost__clamped - 100000) / 300000) + 1 END, count(*) FROM t GROUP BY 1",
    ),
    (
        "SELECT CASE WHEN age < 18 THEN 'child' WHEN age < 65 THEN 'adult' ELSE 'senior' END AS g, "
        "COUNT(*), SUM(cost) FROM t GROUP BY g",
        "SELECT CASE WHEN age__clamped < 18 THEN 'child' WHEN age__clamped < 65 THEN 'adult' "
        "ELSE 'senior' END, count(*), sum(cost__clamped) / 100 FROM t GROUP BY 1",
    ),
    (
        "SELECT sex, COUNT(*) FILTER (WHERE age > 50) AS old, SUM(cost) FILTER (WHERE kind = 'in'), "
        "COUNT(CASE WHEN kind = 'er' THEN 1 END), SUM(CASE WHEN age > 50 THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN kind = 'out' THEN cost ELSE 0 END), AVG(CASE WHEN kind = 'in' THEN age END), "
        "COUNT(age) FILTER (WHERE kind <> 'in') FROM t GROUP BY sex",
        "SELECT sex, count(*) FILTER (WHERE age > 50), "
        "coalesce(sum(cost__clamped) FILTER (WHERE kind = 'in'), 0) / 100, "
        "count(*) FILTER (WHERE kind = 'er'), count(*) FILTER (WHERE age > 50), "
        "coalesce(sum(cost__clamped) FILTER (WHERE kind = 'out'), 0) / 100, "
        "avg(age__clamped) FILTER (WHERE kind = 'in'), count(age__clamped) FILTER (WHERE kind <> 'in') "
        "FROM t WHERE sex IS NOT NULL GROUP BY sex",
    ),
    (
        "SELECT VARIANCE(age) FILTER (WHERE kind = 'in') FROM t",
        "SELECT var_samp(age__clamped) FILTER (WHERE kind = 'in') FROM t",
    ),
]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6)
    return bool(a == b)


@pytest.mark.parametrize(("sql", "plain_sql"), EXACT, ids=[f"shape{i}" for i in range(len(EXACT))])
def test_exact_at_huge_epsilon(
    engine: Engine,
    catalog: Catalog,
    neighbours: tuple[DatasetRecord, DatasetRecord],
    sql: str,
    plain_sql: str,
) -> None:
    """Every bin that holds rows has plain DuckDB's values; bins that hold none are released as 0."""
    record = neighbours[0]
    result = engine.query(record.name, sql, HUGE_EPSILON)
    width = len(result.columns) - sum(1 for a in result.accuracy)
    expected = {tuple(r[:width]): r[width:] for r in stored(catalog, record.name, plain_sql)}
    answered = {tuple(_key(v) for v in r[:width]): r[width:] for r in result.rows}
    expected = {tuple(_key(v) for v in k): v for k, v in expected.items()}
    assert set(expected) <= set(answered), (set(expected) - set(answered), sorted(answered))
    for key, values in answered.items():
        want = expected.get(key)
        if want is None:  # an empty public bin
            assert all(v in (0, 0.0) or v is None or isinstance(v, float) for v in values), (key, values)
            continue
        assert all(same(a, b) for a, b in zip(values, want, strict=True)), (key, values, want)


def test_conditional_counts_in_partition_selection_are_their_own(
    engine: Engine, catalog: Catalog, neighbours: tuple[DatasetRecord, DatasetRecord]
) -> None:
    """With groups selected privately, COUNT(*) FILTER is its own noisy count, not the selection's."""
    record = neighbours[0]
    sql = "SELECT kind, COUNT(*) AS n, COUNT(*) FILTER (WHERE age > 50) AS old FROM t GROUP BY kind"
    result = engine.query(record.name, sql, HUGE_EPSILON, 1e-6)
    assert result.grouping == "threshold"
    plain = "SELECT kind, count(*), count(*) FILTER (WHERE age > 50) FROM t GROUP BY kind"
    expected = {r[0]: list(r[1:]) for r in stored(catalog, record.name, plain)}
    assert {r[0]: r[1:] for r in result.rows} == expected


def _key(value: Any) -> Any:
    return float(value) if isinstance(value, int | float) else value


BIN_SETS = {
    "SELECT FLOOR(age / 10) * 10 AS b, COUNT(*) FROM t GROUP BY b": [float(10 * k) for k in range(11)],
    "SELECT FLOOR(age / 30) AS b, COUNT(*) FROM t GROUP BY b": [0.0, 1.0, 2.0, 3.0],
    "SELECT 5 * FLOOR(age / 30) AS b, COUNT(*) FROM t GROUP BY b": [0.0, 5.0, 10.0, 15.0],
    "SELECT WIDTH_BUCKET(age, 20, 80, 3) AS b, COUNT(*) FROM t GROUP BY b": [0.0, 1.0, 2.0, 3.0, 4.0],
    "SELECT WIDTH_BUCKET(age, 0, 101, 2) AS b, COUNT(*) FROM t GROUP BY b": [1.0, 2.0],
    "SELECT FLOOR(cost / 2500.5) AS b, COUNT(*) FROM t GROUP BY b": [0.0, 1.0],
    "SELECT CASE WHEN kind = 'in' THEN 'inpatient' END AS b, COUNT(*) FROM t GROUP BY b": ["inpatient"],
}


@pytest.mark.parametrize("sql", list(BIN_SETS))
def test_bins_are_public_keys_from_bounds(
    engine: Engine, neighbours: tuple[DatasetRecord, DatasetRecord], sql: str
) -> None:
    """The bin set is derived from the bounds and constants: every bin, empty ones included."""
    plan = engine.plan(neighbours[0].name, sql, 1.0)
    assert plan.grouping is Grouping.PUBLIC_KEYS
    assert [_key(k[0]) for k in plan.public_groups] == BIN_SETS[sql]
    assert plan.selection is None and plan.delta_spent == 0.0


PARITY = [
    *(sql for sql, _ in EXACT),
    *BIN_SETS,
    "SELECT FLOOR(age / 10) * 10 AS b, MEDIAN(cost) FILTER (WHERE kind = 'in') FROM t GROUP BY b",
    "SELECT kind, COUNT(*) FILTER (WHERE age >= 100) FROM t GROUP BY kind",
    "SELECT sex, STDDEV(cost) FILTER (WHERE age IS NULL) FROM t GROUP BY sex",
    "SELECT COUNT(DISTINCT uid) FILTER (WHERE cost > 4000) FROM t",
    "SELECT SUM(CASE WHEN age > 1 THEN age + 1 END) FROM t",
    "SELECT FLOOR(age / 0.001) AS b, COUNT(*) FROM t GROUP BY b",
]


@pytest.mark.parametrize("sql", PARITY, ids=[f"parity{i}" for i in range(len(PARITY))])
def test_neighbouring_datasets_get_the_same_outcome(
    engine: Engine, neighbours: tuple[DatasetRecord, DatasetRecord], sql: str
) -> None:
    """D and D' (one extreme person more): same error or same columns, key set, charge and accuracy;
    at a huge epsilon, released values differ by no more than the person's contribution."""
    first, second = (outcome(engine, record, sql) for record in neighbours)
    assert {k: v for k, v in first.items() if k != "rows"} == {k: v for k, v in second.items() if k != "rows"}
    for a, b in zip(first.get("rows", []), second.get("rows", []), strict=True):
        counts = [(x, y) for x, y in zip(a, b, strict=True) if isinstance(x, int) and isinstance(y, int)]
        assert all(abs(x - y) <= K * 5000 for x, y in counts)


def outcome(engine: Engine, record: DatasetRecord, sql: str) -> dict[str, Any]:
    """What an analyst sees of one query: the error code, or columns, keys, charge and rows."""
    try:
        result = engine.query(record.name, sql, HUGE_EPSILON, 1e-6)
    except QueryRejected as error:
        return {"error": error.code}
    width = len(result.columns) - len(result.accuracy)
    return {
        "columns": result.columns,
        "keys": [tuple(r[:width]) for r in result.rows],
        "charge": (result.epsilon, result.delta),
        "grouping": result.grouping,
        # AVG/VARIANCE CIs are post-processing of noisy counts, so they differ by noise: not compared
        "accuracy": [(a.column, a.aggregate, a.mechanisms, a.rank_error95) for a in result.accuracy],
        "rows": result.rows,
    }


def test_conditional_aggregates_keep_the_unconditioned_sensitivity(
    engine: Engine, neighbours: tuple[DatasetRecord, DatasetRecord]
) -> None:
    """Re-derived: COUNT(*) FILTER has sensitivity k, SUM(cost) FILTER k·max|bound| (fixed point),
    and the epsilon is split evenly over the distinct (quantity, condition) pairs; each loss is
    OpenDP's own map of its measurement."""
    epsilon = 0.9
    sql = (
        "SELECT COUNT(*) FILTER (WHERE age > 50), COUNT(*), SUM(cost) FILTER (WHERE kind = 'in'), "
        "COUNT(CASE WHEN age > 50 THEN 1 END) FROM t"
    )
    plan = engine.plan(neighbours[0].name, sql, epsilon)
    # COUNT(CASE ...) is the same quantity as the first FILTER: three quantities, not four
    assert len(plan.quantities) == 3
    share = epsilon / 3
    expected = {
        ("rows", "age > 50"): K,
        ("rows", None): K,
        ("sum", "kind = 'in'"): K * 5000 * 100,
    }
    for planned in plan.quantities:
        condition = None if planned.condition is None else planned.condition.replace('"', "")
        sensitivity = expected[(planned.quantity.value, condition)]
        assert planned.calibration.sensitivity == sensitivity
        loss = planned.calibration.measurement.map(sensitivity)
        assert loss <= share * (1 + 1e-9)
        assert loss == pytest.approx(share, rel=1e-6)
        reference = mechanisms.integer_laplace(sensitivity, share)
        assert planned.calibration.scale == pytest.approx(reference.scale, rel=1e-9)
    assert sum(p.calibration.epsilon or 0 for p in plan.quantities) <= epsilon * (1 + 1e-9)


def test_bins_need_no_delta_and_touch_at_most_k_bins(
    engine: Engine, neighbours: tuple[DatasetRecord, DatasetRecord]
) -> None:
    """A histogram is public-key grouping: no partition selection, and a quantile in it runs once
    per bin with its share / min(k, bins) (a person's k rows touch at most k bins); the value and
    the two ends of its interval are three quantities, a third of epsilon each."""
    plan = engine.plan(neighbours[0].name, "SELECT FLOOR(age / 50) AS b, MEDIAN(cost) FROM t GROUP BY b", 0.6)
    assert [_key(k[0]) for k in plan.public_groups] == [0.0, 1.0, 2.0]
    runs = [p for p in plan.quantities if p.quantity.value.startswith("quantile")]
    assert len(runs) == len(plan.quantities) == 3
    for run in runs:
        assert run.calibration.epsilon == pytest.approx(0.6 / 3 / min(K, 3), rel=1e-6)


REJECTED = [
    ("SELECT FLOOR(age / 0.05) AS b, COUNT(*) FROM t GROUP BY b", "sql.too_many_bins"),
    ("SELECT FLOOR(age / -1) AS b, COUNT(*) FROM t GROUP BY b", "sql.bin_width"),
    ("SELECT FLOOR(age / 10) * 1e15 AS b, COUNT(*) FROM t GROUP BY b", "sql.bin_shape"),
    ("SELECT FLOOR(age / kind) AS b, COUNT(*) FROM t GROUP BY b", "sql.bin_shape"),
    ("SELECT WIDTH_BUCKET(age, 10, 5, 3) AS b, COUNT(*) FROM t GROUP BY b", "sql.bin_shape"),
    ("SELECT WIDTH_BUCKET(kind, 0, 5, 3) AS b, COUNT(*) FROM t GROUP BY b", "sql.bin_shape"),
    ("SELECT WIDTH_BUCKET(age, 0, 100, 5000) AS b, COUNT(*) FROM t GROUP BY b", "sql.too_many_bins"),
    ("SELECT CASE WHEN age < 5 THEN 'a' ELSE 1 END AS b, COUNT(*) FROM t GROUP BY b", "sql.type_mismatch"),
    ("SELECT CASE WHEN age < 5 THEN age END AS b, COUNT(*) FROM t GROUP BY b", "sql.group_by_measure"),
    ("SELECT age // 10 AS b, COUNT(*) FROM t GROUP BY b", "sql.group_by_measure"),
    ("SELECT CASE WHEN uid < 5 THEN 'a' END AS b, COUNT(*) FROM t GROUP BY b", "sql.group_by_privacy_unit"),
    ("SELECT SUM(CASE WHEN age > 1 THEN cost ELSE 1 END) FROM t", "sql.conditional_aggregate"),
    ("SELECT COUNT(CASE WHEN age > 1 THEN 1 ELSE 0 END) FROM t", "sql.conditional_aggregate"),
    ("SELECT AVG(CASE WHEN age > 1 THEN cost WHEN age > 2 THEN 0 END) FROM t", "sql.conditional_aggregate"),
    ("SELECT COUNT(*) FILTER (WHERE uid > 1) FROM t", "sql.privacy_unit_usage"),
    ("SELECT COUNT(*) FILTER (WHERE SUM(age) > 1) FROM t", "sql.aggregate_position"),
    ("SELECT COUNT(*) FILTER (WHERE age) FROM t", "sql.type_mismatch"),
]


@pytest.mark.parametrize(("sql", "code"), REJECTED, ids=[c for _, c in REJECTED])
def test_shapes_outside_the_rules_are_rejected(
    engine: Engine, neighbours: tuple[DatasetRecord, DatasetRecord], sql: str, code: str
) -> None:
    with pytest.raises(QueryRejected) as caught:
        engine.plan(neighbours[0].name, sql, 1.0)
    assert caught.value.code == code


def test_having_and_order_by_a_conditional_aggregate(
    engine: Engine, neighbours: tuple[DatasetRecord, DatasetRecord]
) -> None:
    """HAVING/ORDER BY may name a FILTER aggregate; it is the released column, not a new quantity."""
    sql = (
        "SELECT kind, COUNT(*) FILTER (WHERE age > 50) AS old FROM t GROUP BY kind "
        "HAVING COUNT(*) FILTER (WHERE age > 50) > 0 ORDER BY COUNT(*) FILTER (WHERE age > 50) DESC"
    )
    plan = engine.plan(neighbours[0].name, sql, HUGE_EPSILON, 1e-6)
    assert len([p for p in plan.quantities if p.condition is not None]) == 1
    result = engine.query(neighbours[0].name, sql, HUGE_EPSILON, 1e-6)
    values = [r[1] for r in result.rows]
    assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
