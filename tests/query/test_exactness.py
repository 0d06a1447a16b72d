"""With a huge epsilon, the engine's answers equal plain DuckDB's on the public datasets (extracts).

At epsilon 1e9 the noise scale of a count is 1e-9, so released values are the exact values of the
stored table (contribution-bounded and clamped at ingest). Plain DuckDB runs on the source Parquet
(one row per person: nothing is dropped) or, for tables with several rows per unit, on the stored
DuckDB file the engine reads. Also: the SmartNoise reference workload in ``pums_queries/``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import yaml
from query_support import HUGE_EPSILON, DatasetMaker, Registrar

from sandbox.catalog import Catalog, DatasetRecord
from sandbox.errors import QueryRejected
from sandbox.query import Engine
from sandbox.query.execute import lockdown_config
from sandbox.settings import Settings

DELTA = 1e-6


def plain(sql: str) -> list[tuple[Any, ...]]:
    """Plain DuckDB on an in-memory connection (source Parquet files)."""
    with duckdb.connect() as connection:
        return connection.execute(sql).fetchall()


def stored(catalog: Catalog, dataset: str, sql: str) -> list[tuple[Any, ...]]:
    """Plain DuckDB on the dataset's stored file, opened read-only as the engine opens it."""
    settings = Settings()
    config = lockdown_config(settings.duckdb_memory_limit, settings.duckdb_threads)
    with duckdb.connect(str(catalog.database_path(dataset)), read_only=True, config=config) as connection:
        return connection.execute(sql).fetchall()


def by_key(rows: list[list[Any]] | list[tuple[Any, ...]], width: int = 1) -> dict[Any, tuple[Any, ...]]:
    """Rows indexed by their first ``width`` columns."""
    return {tuple(r[:width]) if width > 1 else r[0]: tuple(r[width:]) for r in rows}


def test_pums_reference_values(engine: Engine, shared: Registrar) -> None:
    """README §1: count 1000, mean age 44.797, sum of income 34,380,084, mean income 34,380.084."""
    shared("pums")
    result = engine.query(
        "pums", "SELECT COUNT(*), AVG(age), SUM(income), AVG(income) FROM people", HUGE_EPSILON
    )
    ((count, mean_age, total, mean_income),) = result.rows
    assert count == 1000
    assert mean_age == pytest.approx(44.797, abs=1e-9)
    assert total == 34_380_084
    assert mean_income == pytest.approx(34_380.084, abs=1e-6)


def test_pums_dispersion_and_quantiles(engine: Engine, shared: Registrar, shared_data: Path) -> None:
    """VARIANCE/STDDEV are DuckDB's sample versions; quantiles land within one grid step."""
    shared("pums")
    source = shared_data / "pums" / "pums_1000.parquet"
    ((variance, stddev, var_income, median, q25),) = plain(
        f"SELECT var_samp(age), stddev_samp(age), var_samp(income), median(age), "
        f"quantile_cont(income, 0.25) FROM '{source}'"
    )
    result = engine.query(
        "pums",
        "SELECT VARIANCE(age), STDDEV(age), VARIANCE(income), MEDIAN(age), QUANTILE_CONT(income, 0.25) "
        "FROM people",
        HUGE_EPSILON,
    )
    ((v, s, vi, m, q),) = result.rows
    assert v == pytest.approx(variance, rel=1e-9)
    assert s == pytest.approx(stddev, rel=1e-9)
    assert vi == pytest.approx(var_income, rel=1e-6)
    assert m == median  # age bounds [0, 100] give a grid of every integer
    step = -(-500_000 // (512 - 1))  # income candidates: 512 points over [0, 500000]
    assert abs(q - q25) <= step


def test_adult_counts_and_mean_age(engine: Engine, shared: Registrar, shared_data: Path) -> None:
    """Counts by sex and by income class, and the mean age, equal plain DuckDB's on the source."""
    shared("adult")
    source = shared_data / "adult" / "adult.parquet"
    result = engine.query("adult", "SELECT sex, COUNT(*), AVG(age) FROM people GROUP BY sex", HUGE_EPSILON)
    expected = plain(f"SELECT sex, count(*), avg(age) FROM '{source}' GROUP BY sex")
    released = by_key(result.rows)
    assert set(released) == {"Male", "Female"}
    for sex, count, mean in expected:
        assert released[sex][0] == count
        assert released[sex][1] == pytest.approx(mean, rel=1e-9)
    result = engine.query("adult", "SELECT income, COUNT(*) AS n FROM people GROUP BY income", HUGE_EPSILON)
    assert by_key(result.rows) == by_key(plain(f"SELECT income, count(*) FROM '{source}' GROUP BY income"))
    ((mean_age,),) = engine.query("adult", "SELECT AVG(age) FROM people", HUGE_EPSILON).rows
    ((exact,),) = plain(f"SELECT avg(age) FROM '{source}'")
    assert mean_age == pytest.approx(exact, rel=1e-9)


def test_adult_null_key_and_clamped_mean(engine: Engine, shared: Registrar, shared_data: Path) -> None:
    """workclass's public keys include NULL; capital_gain is clamped to [0, 20000] before the mean."""
    shared("adult")
    source = shared_data / "adult" / "adult.parquet"
    expected = plain(
        f"SELECT workclass, count(*), avg(least(capital_gain, 20000)) FROM '{source}' GROUP BY workclass"
    )
    result = engine.query(
        "adult",
        "SELECT workclass, COUNT(*), AVG(capital_gain) FROM people GROUP BY workclass",
        HUGE_EPSILON,
    )
    assert len(result.rows) == 9  # 8 categories and NULL, as declared
    released = by_key(result.rows)
    for key, count, mean in expected:
        assert released[key][0] == count
        assert released[key][1] == pytest.approx(mean, rel=1e-9)


def test_fulton_group_by_puma(engine: Engine, shared: Registrar, shared_data: Path) -> None:
    """Seven districts: counts, clamped income sums and means equal plain DuckDB's."""
    shared("fulton_pums")
    source = shared_data / "fulton_pums" / "fulton_pums5.parquet"
    clamped = "least(greatest(income, -10000), 500000)"
    expected = plain(
        f"SELECT puma, count(*), sum({clamped}), avg({clamped}), avg(age) FROM '{source}' GROUP BY puma"
    )
    result = engine.query(
        "fulton_pums",
        "SELECT puma, COUNT(*), SUM(income), AVG(income), AVG(age) FROM people GROUP BY puma",
        HUGE_EPSILON,
    )
    assert [row[0] for row in result.rows] == [1101, 1102, 1103, 1104, 1105, 1106, 1107]
    released = by_key(result.rows)
    for puma, count, total, mean, mean_age in expected:
        n, s, m, a = released[puma]
        assert (n, s) == (count, total)
        assert m == pytest.approx(mean, rel=1e-9)
        assert a == pytest.approx(mean_age, rel=1e-9)


def test_diabetes_bounded_to_five_encounters(
    engine: Engine, catalog: Catalog, shared: Registrar, shared_data: Path
) -> None:
    """k = 5 keeps at most 5 encounters per patient; answers equal the stored table's."""
    shared("diabetes_130")
    source = shared_data / "diabetes_130" / "encounters.parquet"
    ((kept, everyone, dropped),) = plain(
        f"SELECT sum(least(n, 5)), count(*), sum(n) - sum(least(n, 5)) FROM "
        f"(SELECT count(*) AS n FROM '{source}' GROUP BY patient_nbr)"
    )
    assert dropped > 0  # the source holds patients above the bound
    ((rows, patients),) = stored(
        catalog, "diabetes_130", "SELECT count(*), count(DISTINCT patient_nbr) FROM encounters"
    )
    assert (rows, patients) == (kept, everyone)
    result = engine.query(
        "diabetes_130", "SELECT COUNT(*), COUNT(DISTINCT patient_nbr) FROM encounters", HUGE_EPSILON
    )
    assert result.rows == [[kept, everyone]]

    expected = stored(
        catalog,
        "diabetes_130",
        "SELECT readmitted, count(*), sum(time_in_hospital), avg(least(num_lab_procedures, 100)), "
        "var_samp(least(num_medications, 60)) FROM encounters GROUP BY readmitted",
    )
    result = engine.query(
        "diabetes_130",
        "SELECT readmitted, COUNT(*), SUM(time_in_hospital), AVG(num_lab_procedures), "
        "VARIANCE(num_medications) FROM encounters GROUP BY readmitted",
        HUGE_EPSILON,
    )
    released = by_key(result.rows)
    assert set(released) == {"NO", ">30", "<30"}
    for key, count, days, labs, variance in expected:
        n, d, lab, var = released[key]
        assert (n, d) == (count, days)
        assert lab == pytest.approx(labs, rel=1e-9)
        assert var == pytest.approx(variance, rel=1e-6)


def test_nycflights_clamped_delays(engine: Engine, catalog: Catalog, shared: Registrar) -> None:
    """Mean delays are over delays clamped to [-60, 300]: DuckDB's AVG of the CASE-clamped column."""
    shared("nycflights13")

    def clamp(column: str) -> str:
        return f"CASE WHEN {column} < -60 THEN -60 WHEN {column} > 300 THEN 300 ELSE {column} END"

    expected = stored(
        catalog,
        "nycflights13",
        f"SELECT origin, count(*), avg({clamp('dep_delay')}), avg({clamp('arr_delay')}), "
        "count(dep_delay) FROM flights GROUP BY origin",
    )
    result = engine.query(
        "nycflights13",
        "SELECT origin, COUNT(*), AVG(dep_delay), AVG(arr_delay), COUNT(dep_delay) FROM flights "
        "GROUP BY origin",
        HUGE_EPSILON,
    )
    released = by_key(result.rows)
    assert set(released) == {"EWR", "JFK", "LGA"}
    for origin, count, dep, arr, departed in expected:
        n, d, a, c = released[origin]
        assert (n, c) == (count, departed)
        assert d == pytest.approx(dep, rel=1e-9)
        assert a == pytest.approx(arr, rel=1e-9)


def test_public_keys_are_returned_exactly(engine: Engine, shared: Registrar) -> None:
    """GROUP BY public keys returns every declared key, in declared order, absent ones near 0."""
    shared("pums")
    result = engine.query(
        "pums", "SELECT educ, COUNT(*) AS n FROM people WHERE educ IN (2, 3) GROUP BY educ", HUGE_EPSILON
    )
    assert [row[0] for row in result.rows] == list(range(1, 17))
    counts = by_key(result.rows)
    assert counts[2] == (14,)
    assert counts[3] == (38,)
    assert all(counts[k] == (0,) for k in range(1, 17) if k not in (2, 3))
    result = engine.query(
        "pums",
        "SELECT sex, married, COUNT(*) FROM people WHERE age > 200 GROUP BY sex, married",
        HUGE_EPSILON,
    )
    assert [tuple(r[:2]) for r in result.rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(r[2] == 0 for r in result.rows)


def test_having_order_limit_at_huge_epsilon(engine: Engine, shared: Registrar) -> None:
    """HAVING, ORDER BY and LIMIT run on released values; at epsilon 1e9 those are the exact ones."""
    shared("pums")
    result = engine.query(
        "pums",
        "SELECT educ, COUNT(*) AS n FROM people GROUP BY educ HAVING COUNT(*) > 50 ORDER BY n DESC LIMIT 5",
        HUGE_EPSILON,
    )
    assert result.rows == [[9, 201], [13, 178], [11, 165], [12, 76], [10, 60]]
    result = engine.query(
        "pums",
        "SELECT sex, AVG(income) AS a FROM people GROUP BY sex HAVING a > 40000 OR sex = 0 ORDER BY 1 DESC",
        HUGE_EPSILON,
    )
    assert [row[0] for row in result.rows] == [0]


def test_having_order_limit_use_noisy_values(catalog: Catalog, shared: Registrar) -> None:
    """At a small epsilon the filter, order and cut follow the released values, never the exact ones."""
    shared("pums")
    engine = Engine(catalog, Settings())
    sql = "SELECT educ, COUNT(*) AS n FROM people GROUP BY educ HAVING n >= 20 ORDER BY n ASC LIMIT 7"
    for _ in range(20):
        rows = engine.query("pums", sql, 0.05).rows
        counts = [row[1] for row in rows]
        assert all(n >= 20 for n in counts)
        assert counts == sorted(counts)
        assert len(rows) <= 7


def test_threshold_mode_returns_only_real_groups(engine: Engine, catalog: Catalog, shared: Registrar) -> None:
    """Partition selection at a huge epsilon: no invented key, and every key above the threshold."""
    shared("diabetes_130")
    plan = engine.plan(
        "diabetes_130",
        "SELECT medical_specialty, COUNT(*) AS n FROM encounters GROUP BY medical_specialty",
        HUGE_EPSILON,
        DELTA,
    )
    assert plan.selection is not None and plan.selection.threshold is not None
    result = engine.execute(plan)
    exact = dict(
        stored(catalog, "diabetes_130", "SELECT medical_specialty, count(*) FROM encounters GROUP BY ALL")
    )
    released = dict(result.rows)
    assert set(released) <= set(exact)
    assert {k for k, n in exact.items() if n >= plan.selection.threshold} <= set(released)
    assert all(released[k] == exact[k] for k in released)
    assert result.delta == DELTA
    assert None in released  # NULL is a real group of this column (most encounters have none)


# -- the SmartNoise reference workload ------------------------------------------------------------

WORKLOAD = Path("pums_queries") / "smartnoise_queries.json"


@pytest.fixture(scope="module")
def hpums(catalog: Catalog, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> DatasetRecord:
    """The workload's fixture (pums_queries/README.md): dataset hpums, married an identifier, race
    without public keys."""
    document = {
        "dataset": "hpums",
        "title": "PUMS for the SmartNoise reference workload",
        "owner": "tests",
        "classification": "general",
        "tables": [
            {
                "name": "people",
                "source": "pums/pums_1000.parquet",
                "privacy_unit": "pid",
                "max_rows_per_unit": 1,
                "columns": [
                    {"name": "pid", "role": "privacy_unit"},
                    {"name": "age", "role": "measure", "lower": 0, "upper": 100},
                    {"name": "income", "role": "measure", "lower": 0, "upper": 500000},
                    {"name": "sex", "role": "dimension", "keys": [0, 1]},
                    {"name": "educ", "role": "dimension", "keys": list(range(1, 17))},
                    {"name": "race", "role": "dimension"},
                    {"name": "married", "role": "identifier"},
                ],
            }
        ],
    }
    path = tmp_path_factory.mktemp("hpums") / "hpums.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return catalog.register(path, source_root=shared_data)


def workload(shared_data: Path) -> list[dict[str, Any]]:
    return list(json.loads((shared_data / WORKLOAD).read_text(encoding="utf-8")))


def normalise(value: Any) -> Any:
    """Exact SUM over no rows is NULL; the engine answers 0."""
    return 0 if value is None else value


def same_row(ours: list[Any], exact: list[Any]) -> bool:
    if len(ours) != len(exact):
        return False
    for a, b in zip(ours, map(normalise, exact), strict=True):
        if isinstance(b, float) or isinstance(a, float):
            if not math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6):
                return False
        elif a != b:
            return False
    return True


def same_bag(ours: list[list[Any]], exact: list[list[Any]]) -> bool:
    """Equal as multisets of rows (floats compared with a tolerance)."""
    remaining = list(exact)
    for row in ours:
        match = next((i for i, e in enumerate(remaining) if same_row(row, e)), None)
        if match is None:
            return False
        remaining.pop(match)
    return not remaining


def expected_rows(entry: dict[str, Any]) -> tuple[list[list[Any]], bool]:
    """Exact rows the engine must return (absent public keys added as zeros), and whether the
    engine's row order must match."""
    exact = entry["exact"] if entry["exact"] is not None else entry["exact_if_accepted"]
    absent = entry.get("public_keys_absent_from_exact") or []
    if not absent:
        return exact, bool(entry.get("exact_ordered"))
    width = len(exact[0]) if exact else len(entry["exact_columns"])
    keyed = "exact_keyed" in entry
    zeros = [[0] * width if keyed else [*key.values(), *([0] * (width - len(key)))] for key in absent]
    return exact + zeros, False


def answered(entries: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (e for e in entries if e["we_expect"] == "accept")


# Rejected by SmartNoise, answered here since issue 12 (conditional aggregates), with the exact
# value plain DuckDB computes on the source: workload id -> the same question in plain SQL.
WIDER_THAN_SMARTNOISE = {"sn-130": "SELECT count(*) FILTER (WHERE age > 90) FROM '{source}'"}


def test_workload_expectations_hold(engine: Engine, hpums: DatasetRecord, shared_data: Path) -> None:
    """Queries the workload expects answered are answered with the exact values; the others are
    rejected before execution (or, where the rules leave it open, either)."""
    entries = workload(shared_data)
    assert len(entries) == 141
    problems: list[str] = []
    accepted_open: list[str] = []
    for entry in entries:
        if entry["id"] in WIDER_THAN_SMARTNOISE:
            source = shared_data / "pums" / "pums_1000.parquet"
            plain_sql = WIDER_THAN_SMARTNOISE[entry["id"]].format(source=source)
            assert engine.query(hpums.name, entry["sql"], HUGE_EPSILON).rows == [list(plain(plain_sql)[0])]
            continue
        try:
            result = engine.query(hpums.name, entry["sql"], HUGE_EPSILON)
        except QueryRejected as error:
            if entry["we_expect"] == "accept":
                problems.append(f"{entry['id']}: rejected ({error.code}) but expected answered")
            continue
        if entry["we_expect"] == "reject":
            if not entry["either_ok"]:
                problems.append(f"{entry['id']}: answered but expected rejected ({entry['reason']})")
                continue
            accepted_open.append(entry["id"])
        exact, ordered = expected_rows(entry)
        rows = result.rows
        if "LIMIT" in entry["sql"].upper() and not ordered and "exact_note" in entry:
            limit = int(entry["sql"].rsplit("LIMIT", 1)[1])
            good = len(rows) == min(limit, len(exact)) and all(
                any(same_row(r, e) for e in exact) for r in rows
            )
        elif ordered:
            good = len(rows) == len(exact) and all(same_row(r, e) for r, e in zip(rows, exact, strict=True))
        else:
            good = same_bag(rows, exact)
        if not good:
            problems.append(f"{entry['id']}: {rows[:5]} != {exact[:5]}")
    assert not problems, "\n".join(problems)
    # HAVING / ORDER BY on an aggregate that is not selected (docs/sql.md)
    assert accepted_open == ["sn-033", "sn-049"]


def test_workload_answers_are_all_accepted(engine: Engine, hpums: DatasetRecord, shared_data: Path) -> None:
    """All 63 queries the workload expects answered plan without rejection (none is stricter here)."""
    expected = list(answered(workload(shared_data)))
    assert len(expected) == 63
    for entry in expected:
        engine.plan(hpums.name, entry["sql"], 1.0)


def test_parentheses_do_not_change_keys_or_aggregates(engine: Engine, shared: Registrar) -> None:
    """Outer parentheses around a group key or an aggregate are insignificant, as in DuckDB."""
    shared("pums")
    plain_rows = engine.query(
        "pums",
        "SELECT sex + educ AS k, COUNT(*), SUM(age) FROM people GROUP BY sex + educ",
        HUGE_EPSILON,
        DELTA,
    ).rows
    for sql in [
        "SELECT (sex + educ) AS k, COUNT(*), SUM(age) FROM people GROUP BY k",
        "SELECT sex + educ AS k, (COUNT(*)), ((SUM(age))) FROM people GROUP BY (sex + educ)",
    ]:
        assert engine.query("pums", sql, HUGE_EPSILON, DELTA).rows == plain_rows


def test_quantile_never_leaves_the_bounds(make_dataset: DatasetMaker, catalog: Catalog) -> None:
    """Bounds [-10, 10.01] at scale 2 over 8 candidates: the step rounds up to 286 units (2001 / 7),
    so the last candidate is 10.02, past the upper bound. With every value at the top,
    QUANTILE(v, 0.99) picks it; the release is clamped to the bound."""
    table = pa.table({"uid": pa.array(range(50), pa.int64()), "v": pa.array([10.01] * 50, pa.float64())})
    columns = [
        {"name": "uid", "role": "privacy_unit"},
        {"name": "v", "role": "measure", "lower": -10, "upper": 10.01, "scale": 2},
    ]
    record = make_dataset("quantile_edge", table, columns)
    engine = Engine(catalog, Settings(quantile_candidates=8, max_epsilon_per_query=HUGE_EPSILON))
    (row,) = engine.query(record.name, "SELECT QUANTILE_CONT(v, 0.99) AS q FROM t", HUGE_EPSILON).rows
    assert row[0] == 10.01


def test_unfiltered_count_is_the_stored_row_count(make_dataset: DatasetMaker, catalog: Catalog) -> None:
    """An unfiltered, ungrouped COUNT(*) reads the stored table's row count (once per dataset
    version) instead of running a statement: it counts the rows ingest kept (k per unit, no NULL
    unit), as the statement would, next to a quantile that still runs its own statement."""
    units = [1, 1, 1, 2, 2, 3, None, None, 4]
    table = pa.table({"uid": pa.array(units, pa.int64()), "v": pa.array([1.0] * 9, pa.float64())})
    columns = [
        {"name": "uid", "role": "privacy_unit"},
        {"name": "v", "role": "measure", "lower": 0, "upper": 2, "scale": 0},
    ]
    record = make_dataset("row_count", table, columns, max_rows_per_unit=2)
    engine = Engine(catalog, Settings(max_epsilon_per_query=HUGE_EPSILON))
    ((stored_rows,),) = stored(catalog, record.name, "SELECT count(*) FROM t")
    assert stored_rows == 2 + 2 + 1 + 1
    for _ in range(2):  # the second answer comes from the count kept by the open database
        assert engine.query(record.name, "SELECT COUNT(*) AS n FROM t", HUGE_EPSILON).rows == [[stored_rows]]
    both = engine.query(record.name, "SELECT COUNT(*) AS n, MEDIAN(v) AS m FROM t", HUGE_EPSILON)
    assert both.rows == [[stored_rows, 1.0]]
    filtered = engine.query(record.name, "SELECT COUNT(*) AS n FROM t WHERE v > 0", HUGE_EPSILON)
    assert filtered.rows == [[stored_rows]]
    engine.close()
