"""Every whitelisted function and operator, fed adversarial values, either runs or is rejected at plan.

A tiny purpose-built table holds the extremes (BIGINT min/max, UBIGINT max, +-1e308, NaN, +-inf,
denormals, DECIMAL(38,10) extremes, empty/long/unicode strings, DATE and TIMESTAMP min/max and
+-infinity, NULL everywhere). Each family of expressions is combined ``k`` at a time into one
``WHERE greatest(e1, ..., ek)`` (a scalar function evaluates every argument on every row, unlike
OR/CASE which short-circuit), and every query must execute: a DuckDB error at execution would mean
the whitelist is not total. When a batch fails, its expressions are re-run one by one to name it.
"""

from __future__ import annotations

import decimal
import json
import math
from collections.abc import Iterator

import pyarrow as pa
import pytest
from query_support import DatasetMaker

from sandbox.catalog import Catalog, DatasetRecord
from sandbox.errors import InvalidRequest, QueryRejected, SandboxError
from sandbox.query import Engine
from sandbox.settings import Settings

I64 = 2**63 - 1
DECIMAL_MAX = "9" * 28 + ".9999999999"  # DECIMAL(38, 10)
DECIMALS = [DECIMAL_MAX, "-" + DECIMAL_MAX, "0", None, "1e-10", "1", "-1", "5"]
EPSILON = 1e6
BATCH_CHARACTERS = 6000  # below the 8 KiB SQL limit

NUMERIC_COLUMNS = ["n", "u", "x", "m", "dm"]
NUMERIC_LITERALS = [
    "NULL",
    "0",
    "-0.0",
    "-1",
    "9223372036854775807",
    "-9223372036854775808",
    "9223372036854775808",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1e300",
    "-1e300",
    "5e-324",
    "0.1234567890123456789012345678901234567",
]
LONG = "'" + "y" * 3000 + "'"
STRING_LITERALS = ["NULL", "''", "'a'", "'%'", "'_'", "'\\'", "'数据'", "''''", LONG]
DATE_LITERALS = ["NULL", "DATE '0001-01-01'", "DATE '9999-12-31'", "'1970-01-01'"]
TIMESTAMP_LITERALS = [
    "NULL",
    "TIMESTAMP '0001-01-01 00:00:00'",
    "TIMESTAMP '9999-12-31 23:59:59.999999'",
    "'2024-02-29 12:00:00'",
]
DATE_PARTS = ["year", "quarter", "month", "week", "day", "dayofmonth", "dayofyear", "dayofweek", "isodow"]
EXTRACT_PARTS = [
    "year",
    "quarter",
    "month",
    "week",
    "day",
    "dayofweek",
    "isodow",
    "dayofyear",
    "hour",
    "minute",
]
TRUNC_UNITS = ["year", "quarter", "month", "week", "day", "hour", "minute"]
CAST_TARGETS = [
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "DOUBLE",
    "FLOAT",
    "DECIMAL(18, 3)",
    "DECIMAL(38, 0)",
    "VARCHAR",
    "DATE",
    "TIMESTAMP",
    "BOOLEAN",
]


def null_test(expression: str) -> str:
    """A boolean from an expression of any type."""
    return f"({expression}) IS NULL"


def arithmetic() -> Iterator[str]:
    for column in NUMERIC_COLUMNS:
        for literal in NUMERIC_LITERALS:
            for op in ["+", "-", "*", "/", "%"]:
                yield null_test(f"{column} {op} {literal}")
                yield null_test(f"{literal} {op} {column}")
            yield null_test(f"{column} * {column} * {column}")
            yield null_test(f"-{column} - {literal}")


def comparisons() -> Iterator[str]:
    for column in NUMERIC_COLUMNS:
        for literal in NUMERIC_LITERALS:
            for op in ["=", "<>", "!=", "<", "<=", ">", ">=", "IS DISTINCT FROM", "IS NOT DISTINCT FROM"]:
                yield f"{column} {op} {literal}"
            yield f"{column} BETWEEN {literal} AND {column}"
            yield f"{column} NOT BETWEEN {column} AND {literal}"
            yield f"{column} IN ({literal}, {column})"
            yield f"{column} NOT IN ({literal})"
        yield f"{column} IS NULL"
        yield f"{column} IS NOT NULL"
        yield "x <> x"


def numeric_functions() -> Iterator[str]:
    for column in NUMERIC_COLUMNS:
        for function in ["abs", "floor", "ceil", "sign", "round"]:
            yield null_test(f"{function}({column})")
            yield null_test(f"{function}({column} * {column})")
            yield null_test(f"{function}({column} / 0)")
        for digits in range(11):
            yield null_test(f"round({column}, {digits})")
            yield null_test(f"round({column} * 1e300, {digits})")


def conditionals() -> Iterator[str]:
    for column in NUMERIC_COLUMNS:
        for literal in NUMERIC_LITERALS:
            yield null_test(f"coalesce({column}, {literal})")
            yield null_test(f"greatest({column}, {literal}, x)")
            yield null_test(f"least({literal}, {column})")
            yield null_test(f"nullif({column}, {literal})")
            yield null_test(f"CASE WHEN {column} > 0 THEN {column} WHEN {column} < 0 THEN {literal} END")
            yield null_test(f"CASE WHEN b THEN {literal} ELSE {column} END")
            yield null_test(f"IF({column} < 0, {literal}, {column})")


def casts() -> Iterator[str]:
    for column in [*NUMERIC_COLUMNS, "s", "d", "ts", "b"]:
        for target in CAST_TARGETS:
            yield null_test(f"TRY_CAST({column} AS {target})")
    for column in NUMERIC_COLUMNS:
        for target in CAST_TARGETS:
            yield null_test(f"TRY_CAST({column} * 1e300 AS {target})")
    for literal in STRING_LITERALS:
        for target in CAST_TARGETS:
            yield null_test(f"TRY_CAST({literal} AS {target})")


def strings() -> Iterator[str]:
    for literal in STRING_LITERALS:
        for function in ["lower", "upper", "trim", "length"]:
            yield null_test(f"{function}({literal})")
        for op in ["=", "<>", "<", ">=", "LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"]:
            yield f"s {op} {literal}"
            yield f"{literal} {op} s"
        yield f"starts_with(s, {literal})"
        yield f"contains({literal}, s)"
        yield f"s IN ({literal}, '', NULL)"
        yield null_test(f"s || {literal}")
        yield null_test(f"concat({literal}, s, {literal})")
        yield null_test(f"coalesce(s, {literal})")
        yield null_test(f"nullif(s, {literal})")
        yield null_test(f"greatest(s, {literal})")
        yield null_test(f"least({literal}, s)")
        yield null_test(f"CASE WHEN s = {literal} THEN s END")
        for start, length in [(1, 1), (0, 0), (-1, 5), (2147483647, 2147483647), (-2147483647, 2147483647)]:
            yield null_test(f"substring(s, {start}, {length})")
            yield null_test(f"substring({literal}, {start}, {length})")
    for function in ["lower", "upper", "trim", "length"]:
        yield null_test(f"{function}(s)")
    yield null_test("substring(s, 3)")
    for column in [*NUMERIC_COLUMNS, "d", "ts", "b"]:
        yield null_test(f"concat({column}, s, {column})")
        yield null_test(f"{column} || s")


def temporal() -> Iterator[str]:
    for column, literals in [("d", DATE_LITERALS), ("ts", TIMESTAMP_LITERALS)]:
        for part in DATE_PARTS:
            yield null_test(f"{part}({column})")
        yield null_test(f"hour({column})")
        yield null_test(f"minute({column})")
        for part in EXTRACT_PARTS:
            yield null_test(f"extract({part} FROM {column})")
        for unit in TRUNC_UNITS:
            yield null_test(f"date_trunc('{unit}', {column})")
            yield f"date_trunc('{unit}', {column}) >= {literals[1]}"
            yield null_test(f"year(date_trunc('{unit}', {column}))")
        for literal in literals:
            for op in ["=", "<", ">=", "<>"]:
                yield f"{column} {op} {literal}"
            yield f"{column} BETWEEN {literal} AND {literals[2]}"
            yield f"{column} IN ({literal})"
            if literal.startswith(("DATE", "TIMESTAMP", "NULL")):
                yield null_test(f"coalesce({column}, {literal})")
                yield null_test(f"greatest({column}, {literal})")
                yield null_test(f"least({column}, {literal})")
    yield "ts > DATE '9999-12-31'"
    yield "ts < DATE '0001-01-01'"
    yield "TRY_CAST(d AS TIMESTAMP) < ts"
    yield null_test("greatest(TRY_CAST(d AS TIMESTAMP), ts)")


def booleans() -> Iterator[str]:
    yield from [
        "b",
        "NOT b",
        "b = TRUE",
        "b IS TRUE",
        "b IS NOT FALSE",
        "b AND NULL",
        "b OR NULL",
        "NOT (b AND (x > 0 OR NULL))",
        "b IN (TRUE, NULL)",
        "NULL",
        "TRUE",
        "FALSE",
        "NULL IS NULL",
        "(x > 0) = (m > 0)",
        null_test("coalesce(b, NULL)"),
        null_test("nullif(b, TRUE)"),
    ]


FAMILIES = {
    "arithmetic": arithmetic,
    "comparisons": comparisons,
    "numeric_functions": numeric_functions,
    "conditionals": conditionals,
    "casts": casts,
    "strings": strings,
    "temporal": temporal,
    "booleans": booleans,
}


@pytest.fixture(scope="module")
def adversarial(make_dataset: DatasetMaker) -> DatasetRecord:
    """Eight rows of extremes, one privacy unit each."""
    table = pa.table(
        {
            "uid": pa.array(range(1, 9), pa.int64()),
            "n": pa.array([-I64 - 1, I64, 0, -1, 1, None, 42, 7], pa.int64()),
            "u": pa.array([2**64 - 1, 0, 1, None, 2, 3, 4, 5], pa.uint64()),
            "x": pa.array([1e308, -1e308, math.nan, math.inf, -math.inf, None, 0.0, 5e-324], pa.float64()),
            "m": pa.array([-I64 - 1, I64, 0, None, 3, 1, 2, -5], pa.int64()),
            "dm": pa.array(
                [None if v is None else decimal.Decimal(v) for v in DECIMALS], pa.decimal128(38, 10)
            ),
            "s": pa.array(["", "a", "x" * 10000, "ÄÖü 数据", None, "%_\\", "'; DROP TABLE t; --", "NULL"]),
            # DuckDB reads date32 +-(2^31 - 1) as +-infinity and +-(2^31 - 2) as its min/max date
            "d": pa.array([-(2**31) + 1, 2**31 - 1, -(2**31) + 2, 2**31 - 2, 0, None, 19782, -719162])
            .cast(pa.int32())
            .cast(pa.date32()),
            # likewise +-(2^63 - 1) microseconds are +-infinity; then DuckDB's min and max timestamps
            "ts": pa.array(
                [-I64, I64, -9223372022400000000, I64 - 1, 0, None, 1709208000000000, -62135596800000000],
                pa.int64(),
            ).cast(pa.timestamp("us")),
            "b": pa.array([True, False, None, True, False, None, True, False]),
        }
    )
    columns = [
        {"name": "uid", "role": "privacy_unit"},
        {"name": "n", "role": "dimension"},
        {"name": "u", "role": "dimension"},
        {"name": "x", "role": "measure", "lower": -1000, "upper": 1000},
        {"name": "m", "role": "measure", "lower": -100, "upper": 100},
        {"name": "dm", "role": "measure", "lower": -10, "upper": 10},
        {"name": "s", "role": "dimension"},
        {"name": "d", "role": "dimension"},
        {"name": "ts", "role": "dimension"},
        {"name": "b", "role": "dimension", "keys": [True, False, None]},
    ]
    return make_dataset("adversarial", table, columns)


def batches(expressions: list[str]) -> Iterator[list[str]]:
    """Groups of expressions whose combined SQL stays under the SQL length limit."""
    batch: list[str] = []
    size = 0
    for expression in expressions:
        if batch and size + len(expression) > BATCH_CHARACTERS:
            yield batch
            batch, size = [], 0
        batch.append(expression)
        size += len(expression) + 2
    if batch:
        yield batch


def where_sql(expressions: list[str]) -> str:
    condition = expressions[0] if len(expressions) == 1 else f"greatest({', '.join(expressions)})"
    return f"SELECT COUNT(*) AS n FROM t WHERE {condition}"


def run(engine: Engine, dataset: str, sql: str) -> str | None:
    """None if the query planned and executed; otherwise what went wrong."""
    try:
        engine.query(dataset, sql, EPSILON)
    except SandboxError as error:
        return f"{error.code}: {error.message}"
    except Exception as error:
        return f"crash {type(error).__name__}: {error}"
    return None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_is_total(engine: Engine, adversarial: DatasetRecord, family: str) -> None:
    """Every expression of the family is accepted and executes on every extreme value."""
    expressions = list(dict.fromkeys(FAMILIES[family]()))
    assert len(expressions) >= 15
    failures = []
    for batch in batches(expressions):
        if run(engine, adversarial.name, where_sql(batch)) is None:
            continue
        for expression in batch:
            problem = run(engine, adversarial.name, where_sql([expression]))
            if problem is not None:
                failures.append(f"{expression[:120]} -> {problem[:200]}")
    assert not failures, "\n".join(failures[:20])


# (expression, code): adversarial inputs that are planned rejections, never execution errors
PLANNED_REJECTIONS = [
    ("x > 1e308", "sql.invalid_literal"),
    ("x < -1e308", "sql.invalid_literal"),
    ("x + 1e301 > 0", "sql.invalid_literal"),
    ("round(x, 11) > 0", "sql.function_not_allowed"),
    ("substring(s, 9999999999) = ''", "sql.function_not_allowed"),
    ("d = ts", "sql.type_mismatch"),
    ("greatest(d, ts) IS NULL", "sql.type_mismatch"),
    ("coalesce(d, '1970-01-01') IS NULL", "sql.type_mismatch"),
    ("d < TIMESTAMP '2000-01-01 00:00:00'", "sql.type_mismatch"),
    ("s = 1", "sql.type_mismatch"),
    ("DATE '10000-01-01' > d", "sql.invalid_literal"),
    ("TRY_CAST(x AS BLOB) IS NULL", "sql.cast_type"),
    ("CAST(x AS BIGINT) = 1", "sql.cast_not_allowed"),
    ("repeat(s, 2000000000) = ''", "sql.function_not_allowed"),
    ("x // 0 = 1", "sql.expression_not_allowed"),
]


@pytest.mark.parametrize(("expression", "code"), PLANNED_REJECTIONS, ids=[e for e, _ in PLANNED_REJECTIONS])
def test_planned_rejections(engine: Engine, adversarial: DatasetRecord, expression: str, code: str) -> None:
    """Inputs that could raise in DuckDB are refused before execution, with the rule named."""
    with pytest.raises(QueryRejected) as caught:
        engine.plan(adversarial.name, where_sql([expression]), EPSILON)
    assert caught.value.code == code


def exact(engine: Engine, dataset: str, sql: str, delta: float = 0.0) -> list[list[object]]:
    return engine.query(dataset, sql, 1e9, delta).rows


def test_extremes_filter_exactly(engine: Engine, adversarial: DatasetRecord) -> None:
    """With a huge epsilon, filters on extreme values count the rows plain SQL would."""
    name = adversarial.name
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE n = 9223372036854775807") == [[1]]
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE n = -9223372036854775808") == [[1]]
    # arithmetic runs in DOUBLE: n + 1 cannot overflow, and 2^63 - 1 + 1 rounds to 2^63
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE n + 1 >= 9223372036854775807") == [[1]]
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE u > 18446744073709551614") == [[1]]
    # DuckDB orders NaN above +inf and equal to itself
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE x > 1e300") == [[3]]  # 1e308, inf, NaN
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE x = TRY_CAST('NaN' AS DOUBLE)") == [[1]]
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE x IS NULL") == [[1]]
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE dm > 1e27") == [[1]]
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE s = ''") == [[1]]
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE length(s) = 10000") == [[1]]
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE s LIKE '\\%'") == [[0]]
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE contains(s, '%_')") == [[1]]
    # dates outside years 1-9999 (infinity included) are stored as NULL (docs/catalog.md)
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE d > DATE '9999-12-31'") == [[0]]
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE date_trunc('year', d) IS NULL") == [[5]]
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE year(ts) = 2024") == [[1]]
    assert exact(engine, name, "SELECT COUNT(*) FROM t WHERE b IS NULL") == [[2]]


AGGREGATES = [
    "SELECT COUNT(*), COUNT(x), COUNT(m), COUNT(dm), COUNT(s), COUNT(d), COUNT(ts), COUNT(b) FROM t",
    "SELECT SUM(x), SUM(m), SUM(dm), AVG(x), AVG(m), AVG(dm) FROM t",
    "SELECT VARIANCE(x), STDDEV(m), VARIANCE(dm), STDDEV(dm) FROM t",
    "SELECT MEDIAN(x), QUANTILE_CONT(m, 0.01), QUANTILE_CONT(dm, 0.99) FROM t",
    "SELECT COUNT(DISTINCT uid) FROM t WHERE x <> x OR x IS NULL",
    "SELECT b, COUNT(*), SUM(x), AVG(m), VARIANCE(dm), MEDIAN(dm) FROM t GROUP BY b",
    "SELECT n, COUNT(*) FROM t GROUP BY n",
    "SELECT u, SUM(m) FROM t GROUP BY u",
    "SELECT s, COUNT(*), AVG(x) FROM t GROUP BY s",
    "SELECT d, COUNT(*) FROM t GROUP BY d",
    "SELECT ts, SUM(dm) FROM t GROUP BY ts",
    "SELECT date_trunc('year', ts) AS y, COUNT(*) FROM t GROUP BY date_trunc('year', ts)",
    "SELECT year(d) AS y, MEDIAN(x) FROM t GROUP BY year(d)",
    "SELECT length(s) AS l, COUNT(*) FROM t GROUP BY length(s)",
    "SELECT n + 1 AS k, COUNT(*) FROM t GROUP BY n + 1",
    "SELECT b, s, COUNT(*) FROM t GROUP BY b, s",
    "SELECT b, COUNT(*) AS c FROM t GROUP BY b HAVING COUNT(*) > 9223372036854775808 OR SUM(x) < -1e300 "
    "ORDER BY c DESC LIMIT 2147483647",
    "SELECT b, AVG(x) AS a FROM t GROUP BY b HAVING a IS NULL OR a / 0 > 1 ORDER BY a * 1e300",
    "SELECT abs(9223372036854775808) AS k, COUNT(*) FROM t GROUP BY k HAVING k > 1 ORDER BY k",
    "SELECT u AS k, COUNT(*) AS c FROM t WHERE u > 0 GROUP BY u HAVING k > 1 OR c >= 0 ORDER BY k DESC",
]


@pytest.mark.parametrize("sql", AGGREGATES)
def test_aggregates_over_extremes_execute(engine: Engine, adversarial: DatasetRecord, sql: str) -> None:
    """Every aggregate and grouping mode runs over the extremes (clamped measures, odd keys)."""
    result = engine.query(adversarial.name, sql, EPSILON, 1e-6)
    assert result.columns
    for row in result.rows:
        for value in row[-1:]:
            assert value is None or not isinstance(value, float) or math.isfinite(value)


def test_clamped_aggregates_are_exact(engine: Engine, adversarial: DatasetRecord) -> None:
    """Measures are clamped at ingest: NaN counts as NULL, +-inf and +-1e308 as the bounds."""
    name = adversarial.name
    rows = exact(engine, name, "SELECT COUNT(x), SUM(x), COUNT(m), SUM(m), SUM(dm) FROM t")
    count_x, sum_x, count_m, sum_m, sum_dm = rows[0]
    assert count_x == 6  # 1e308, -1e308, inf, -inf, 0, 5e-324
    assert sum_x == pytest.approx(0.0, abs=1e-3)
    assert count_m == 7
    assert sum_m == -100 + 100 + 0 + 3 + 1 + 2 - 5
    assert sum_dm == pytest.approx(10 - 10 + 0 + 1e-10 + 1 - 1 + 5, abs=1e-5)


def test_non_finite_float_keys_group_with_null_and_serialise(
    make_dataset: DatasetMaker, catalog: Catalog
) -> None:
    """±inf and NaN group keys have no JSON value (the gateway would answer 500 after charging) and
    -0.0 shares DuckDB's group with 0.0: floating keys are grouped as ``CASE WHEN isfinite(k) THEN k + 0
    END``, so every released key serialises and no two released rows share a key."""
    values = [0.0, -0.0, math.inf, -math.inf, math.nan, None, 2.5] * 30
    table = pa.table({"uid": pa.array(range(len(values)), pa.int64()), "f": pa.array(values, pa.float64())})
    columns = [{"name": "uid", "role": "privacy_unit"}, {"name": "f", "role": "dimension"}]
    record = make_dataset("nonfinite_keys", table, columns)
    engine = Engine(catalog, Settings(max_epsilon_per_query=1e6))
    for sql in (
        "SELECT f, COUNT(*) AS n FROM t GROUP BY f",
        "SELECT f * 1 AS g, COUNT(*) AS n FROM t GROUP BY f * 1",
    ):
        result = engine.query(record.name, sql, 1e6, 1e-6)
        json.dumps(result.to_dict(), allow_nan=False)
        released = {row[0]: row[1] for row in result.rows}
        assert len(released) == len(result.rows)
        assert released == {0.0: 60, 2.5: 30, None: 120}, sql
        assert all(math.copysign(1, k) == 1 for k in released if k is not None)


def test_gaussian_at_huge_epsilon_is_a_request_error(make_dataset: DatasetMaker, catalog: Catalog) -> None:
    """OpenDP's zCDP conversion overflows at epsilon 1e5: refused as request.epsilon, not a 500."""
    table = pa.table({"uid": pa.array(range(5), pa.int64())})
    record = make_dataset("gauss_huge", table, [{"name": "uid", "role": "privacy_unit"}])
    engine = Engine(catalog, Settings(max_epsilon_per_query=1e6, mechanism="gaussian"))
    with pytest.raises(InvalidRequest) as caught:
        engine.query(record.name, "SELECT COUNT(*) AS n FROM t", 1e5, 1e-6)
    assert caught.value.code == "request.epsilon"
