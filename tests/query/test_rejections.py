"""Every forbidden construct is rejected before execution, with its exact error code.

Each case is planned only (``Engine.plan`` reads metadata, never data), so a rejection cannot
depend on the data. Messages are also checked for data values: category names that occur in the
shared data but neither in the query nor in the metadata must never appear in an error.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from query_support import SHARED_METADATA, DatasetMaker, Registrar

from sandbox.catalog import Catalog, DatasetRecord
from sandbox.errors import InvalidRequest, PayloadTooLarge, PolicyDenied, QueryRejected, SandboxError
from sandbox.query import Engine

# (id, dataset, sql, code). "pums" has people(pid unit k=1; age, income measures; sex, educ, race,
# married dimensions with public keys); "diabetes_130" has encounters(patient_nbr unit k=5,
# encounter_id identifier, data-dependent medical_specialty / payer_code / diag_1).
CASES: list[tuple[str, str, str, str]] = [
    # subqueries
    ("subquery_from", "pums", "SELECT COUNT(*) FROM (SELECT * FROM people)", "sql.subquery"),
    ("subquery_where", "pums", "SELECT COUNT(*) FROM people WHERE age > (SELECT 1)", "sql.subquery"),
    ("subquery_select", "pums", "SELECT COUNT(*), (SELECT 1) FROM people", "sql.subquery"),
    ("subquery_exists", "pums", "SELECT COUNT(*) FROM people WHERE EXISTS (SELECT 1)", "sql.subquery"),
    (
        "subquery_in",
        "pums",
        "SELECT COUNT(*) FROM people WHERE age IN (SELECT age FROM people)",
        "sql.subquery",
    ),
    ("subquery_any", "pums", "SELECT COUNT(*) FROM people WHERE age = ANY (SELECT 1)", "sql.subquery"),
    ("subquery_parenthesised", "pums", "(SELECT COUNT(*) FROM people)", "sql.subquery"),
    ("cte", "pums", "WITH t AS (SELECT * FROM people) SELECT COUNT(*) FROM t", "sql.cte"),
    # joins
    ("join_comma", "pums", "SELECT COUNT(*) FROM people, people AS b", "sql.join"),
    ("join_on", "pums", "SELECT COUNT(*) FROM people JOIN people AS b ON people.age = b.age", "sql.join"),
    ("join_lateral", "pums", "SELECT COUNT(*) FROM people, LATERAL (SELECT 1)", "sql.join"),
    # windows
    ("window_over", "pums", "SELECT COUNT(*) OVER () FROM people", "sql.window_function"),
    (
        "window_partition",
        "pums",
        "SELECT SUM(age) OVER (PARTITION BY sex) FROM people",
        "sql.window_function",
    ),
    (
        "window_clause",
        "pums",
        "SELECT COUNT(*) FROM people WINDOW w AS (PARTITION BY sex)",
        "sql.window_function",
    ),
    (
        "qualify",
        "pums",
        "SELECT COUNT(*) FROM people QUALIFY ROW_NUMBER() OVER () = 1",
        "sql.window_function",
    ),
    # table functions and files
    ("read_csv", "pums", "SELECT COUNT(*) FROM read_csv('/etc/passwd')", "sql.table_function"),
    ("read_parquet", "pums", "SELECT COUNT(*) FROM read_parquet('/tmp/x.parquet')", "sql.table_function"),
    ("read_blob", "pums", "SELECT COUNT(*) FROM read_blob('/tmp/x')", "sql.table_function"),
    ("range", "pums", "SELECT COUNT(*) FROM range(10)", "sql.table_function"),
    ("glob", "pums", "SELECT COUNT(*) FROM glob('*')", "sql.table_function"),
    ("duckdb_tables_fn", "pums", "SELECT COUNT(*) FROM duckdb_tables()", "sql.table_function"),
    ("file_path_table", "pums", "SELECT COUNT(*) FROM '/etc/passwd'", "sql.unknown_table"),
    # set operations
    ("union", "pums", "SELECT COUNT(*) FROM people UNION SELECT COUNT(*) FROM people", "sql.set_operation"),
    (
        "intersect",
        "pums",
        "SELECT COUNT(*) FROM people INTERSECT SELECT COUNT(*) FROM people",
        "sql.set_operation",
    ),
    ("except", "pums", "SELECT COUNT(*) FROM people EXCEPT SELECT COUNT(*) FROM people", "sql.set_operation"),
    # statements
    ("create", "pums", "CREATE TABLE x AS SELECT 1", "sql.statement_not_allowed"),
    ("drop", "pums", "DROP TABLE people", "sql.statement_not_allowed"),
    ("insert", "pums", "INSERT INTO people VALUES (1)", "sql.statement_not_allowed"),
    ("update", "pums", "UPDATE people SET age = 1", "sql.statement_not_allowed"),
    ("delete", "pums", "DELETE FROM people", "sql.statement_not_allowed"),
    ("alter", "pums", "ALTER TABLE people ADD COLUMN x INT", "sql.statement_not_allowed"),
    ("pragma", "pums", "PRAGMA database_list", "sql.statement_not_allowed"),
    ("set", "pums", "SET threads = 1", "sql.statement_not_allowed"),
    ("reset", "pums", "RESET threads", "sql.statement_not_allowed"),
    ("attach", "pums", "ATTACH '/tmp/x.db' AS x", "sql.statement_not_allowed"),
    ("detach", "pums", "DETACH x", "sql.statement_not_allowed"),
    ("copy", "pums", "COPY people TO '/tmp/x.csv'", "sql.statement_not_allowed"),
    ("install", "pums", "INSTALL httpfs", "sql.statement_not_allowed"),
    ("load", "pums", "LOAD httpfs", "sql.statement_not_allowed"),
    ("export", "pums", "EXPORT DATABASE '/tmp/x'", "sql.statement_not_allowed"),
    ("import", "pums", "IMPORT DATABASE '/tmp/x'", "sql.statement_not_allowed"),
    ("call", "pums", "CALL duckdb_tables()", "sql.statement_not_allowed"),
    ("summarize", "pums", "SUMMARIZE people", "sql.statement_not_allowed"),
    ("explain", "pums", "EXPLAIN SELECT COUNT(*) FROM people", "sql.statement_not_allowed"),
    ("explain_analyze", "pums", "EXPLAIN ANALYZE SELECT COUNT(*) FROM people", "sql.statement_not_allowed"),
    ("describe", "pums", "DESCRIBE people", "sql.statement_not_allowed"),
    ("show", "pums", "SHOW TABLES", "sql.statement_not_allowed"),
    ("create_macro", "pums", "CREATE MACRO m(a) AS a", "sql.statement_not_allowed"),
    ("create_secret", "pums", "CREATE SECRET s (TYPE s3)", "sql.statement_not_allowed"),
    ("checkpoint", "pums", "CHECKPOINT", "sql.statement_not_allowed"),
    ("prepare", "pums", "PREPARE p AS SELECT COUNT(*) FROM people", "sql.statement_not_allowed"),
    ("values", "pums", "VALUES (1)", "sql.statement_not_allowed"),
    ("pivot", "pums", "PIVOT people ON sex USING COUNT(*)", "sql.statement_not_allowed"),
    ("transaction", "pums", "BEGIN TRANSACTION", "sql.statement_not_allowed"),
    # system catalogs
    ("information_schema", "pums", "SELECT COUNT(*) FROM information_schema.tables", "sql.system_catalog"),
    ("pg_catalog", "pums", "SELECT COUNT(*) FROM pg_catalog.pg_class", "sql.system_catalog"),
    ("sqlite_master", "pums", "SELECT COUNT(*) FROM sqlite_master", "sql.system_catalog"),
    ("duckdb_view", "pums", "SELECT COUNT(*) FROM duckdb_tables", "sql.system_catalog"),
    ("schema_prefix", "pums", "SELECT COUNT(*) FROM main.people", "sql.unknown_table"),
    # raw output
    ("raw_column", "pums", "SELECT age FROM people", "sql.raw_column_output"),
    ("raw_expression", "pums", "SELECT age + 1 FROM people", "sql.raw_column_output"),
    ("select_star", "pums", "SELECT * FROM people", "sql.select_star"),
    ("star_with_aggregate", "pums", "SELECT COUNT(*), * FROM people", "sql.select_star"),
    ("bare_from", "pums", "FROM people", "sql.select_star"),
    ("literal_output", "pums", "SELECT 3, COUNT(*) FROM people", "sql.literal_output"),
    ("no_aggregate", "pums", "SELECT sex FROM people GROUP BY sex", "sql.no_aggregate"),
    ("no_table", "pums", "SELECT COUNT(*)", "sql.no_table"),
    ("duplicate_output", "pums", "SELECT COUNT(*) AS c, SUM(age) AS c FROM people", "sql.duplicate_output"),
    # aggregates that reveal values
    (
        "string_agg",
        "pums",
        "SELECT string_agg(TRY_CAST(sex AS VARCHAR), ',') FROM people",
        "sql.forbidden_aggregate",
    ),
    ("list", "pums", "SELECT list(age) FROM people", "sql.forbidden_aggregate"),
    ("array_agg", "pums", "SELECT array_agg(age) FROM people", "sql.forbidden_aggregate"),
    ("min", "pums", "SELECT MIN(age) FROM people", "sql.forbidden_aggregate"),
    ("max", "pums", "SELECT MAX(income) FROM people", "sql.forbidden_aggregate"),
    ("first", "pums", "SELECT FIRST(age) FROM people", "sql.forbidden_aggregate"),
    ("any_value", "pums", "SELECT ANY_VALUE(age) FROM people", "sql.forbidden_aggregate"),
    ("arg_max", "pums", "SELECT ARG_MAX(age, income) FROM people", "sql.forbidden_aggregate"),
    ("mode", "pums", "SELECT mode(age) FROM people", "sql.forbidden_aggregate"),
    ("histogram", "pums", "SELECT histogram(age) FROM people", "sql.forbidden_aggregate"),
    ("quantile_disc", "pums", "SELECT quantile_disc(age, 0.5) FROM people", "sql.forbidden_aggregate"),
    ("min_in_expression", "pums", "SELECT MIN(age) + 1 FROM people", "sql.forbidden_aggregate"),
    (
        "min_in_having",
        "pums",
        "SELECT sex, COUNT(*) FROM people GROUP BY sex HAVING MAX(age) > 1",
        "sql.forbidden_aggregate",
    ),
    # privacy unit and identifiers
    ("group_by_unit", "pums", "SELECT COUNT(*) FROM people GROUP BY pid", "sql.group_by_privacy_unit"),
    (
        "group_by_unit_expression",
        "pums",
        "SELECT COUNT(*) FROM people GROUP BY pid % 2",
        "sql.group_by_privacy_unit",
    ),
    ("unit_in_where", "pums", "SELECT COUNT(*) FROM people WHERE pid = 1", "sql.privacy_unit_usage"),
    ("unit_output", "pums", "SELECT pid, COUNT(*) FROM people", "sql.raw_column_output"),
    ("sum_of_unit", "pums", "SELECT SUM(pid) FROM people", "sql.aggregate_non_measure"),
    (
        "identifier_select",
        "diabetes_130",
        "SELECT encounter_id, COUNT(*) FROM encounters",
        "sql.identifier_column",
    ),
    (
        "identifier_where",
        "diabetes_130",
        "SELECT COUNT(*) FROM encounters WHERE encounter_id > 1",
        "sql.identifier_column",
    ),
    (
        "identifier_group_by",
        "diabetes_130",
        "SELECT COUNT(*) FROM encounters GROUP BY encounter_id",
        "sql.identifier_column",
    ),
    (
        "identifier_count",
        "diabetes_130",
        "SELECT COUNT(encounter_id) FROM encounters",
        "sql.identifier_column",
    ),
    (
        "identifier_having",
        "diabetes_130",
        "SELECT COUNT(*) FROM encounters HAVING encounter_id > 1",
        "sql.identifier_column",
    ),
    ("group_by_measure", "pums", "SELECT age, COUNT(*) FROM people GROUP BY age", "sql.group_by_measure"),
    (
        "group_by_measure_expression",
        "pums",
        "SELECT COUNT(*) FROM people GROUP BY age // 10",
        "sql.group_by_measure",
    ),
    # unknown names
    ("unknown_column", "pums", "SELECT COUNT(*) FROM people WHERE nope = 1", "sql.unknown_column"),
    (
        "unknown_qualified_column",
        "pums",
        "SELECT COUNT(*) FROM people WHERE other.age > 1",
        "sql.unknown_column",
    ),
    (
        "undeclared_column",
        "diabetes_130",
        "SELECT COUNT(*) FROM encounters WHERE weight = '1'",
        "sql.unknown_column",
    ),
    ("unknown_table", "pums", "SELECT COUNT(*) FROM nope", "sql.unknown_table"),
    ("unknown_group_position", "pums", "SELECT sex, COUNT(*) FROM people GROUP BY 5", "sql.unknown_column"),
    ("order_by_raw_column", "pums", "SELECT COUNT(*) FROM people ORDER BY age", "sql.raw_column_output"),
    # aggregate rules
    ("count_distinct_non_unit", "pums", "SELECT COUNT(DISTINCT age) FROM people", "sql.count_distinct"),
    ("count_distinct_two", "pums", "SELECT COUNT(DISTINCT pid, age) FROM people", "sql.count_distinct"),
    ("avg_distinct", "pums", "SELECT AVG(DISTINCT age) FROM people", "sql.aggregate_argument"),
    ("expression_in_sum", "pums", "SELECT SUM(age + 1) FROM people", "sql.aggregate_argument"),
    (
        "case_in_sum",
        "pums",
        "SELECT SUM(CASE WHEN age > 90 THEN age + 1 END) FROM people",
        "sql.conditional_aggregate",
    ),
    ("expression_in_count", "pums", "SELECT COUNT(age + 1) FROM people", "sql.aggregate_argument"),
    ("nested_aggregate", "pums", "SELECT SUM(AVG(age)) FROM people", "sql.nested_aggregate"),
    ("arithmetic_on_aggregate", "pums", "SELECT SUM(age) + 1 FROM people", "sql.aggregate_expression"),
    ("scaled_count", "pums", "SELECT COUNT(*) * 2 FROM people", "sql.aggregate_expression"),
    ("cast_of_aggregate", "pums", "SELECT COUNT(*)::VARCHAR FROM people", "sql.aggregate_expression"),
    (
        "case_else_zero_in_avg",
        "pums",
        "SELECT AVG(CASE WHEN age > 1 THEN income ELSE 0 END) FROM people",
        "sql.conditional_aggregate",
    ),
    ("sum_of_dimension", "pums", "SELECT SUM(sex) FROM people", "sql.aggregate_non_measure"),
    ("median_of_dimension", "pums", "SELECT MEDIAN(sex) FROM people", "sql.aggregate_non_measure"),
    (
        "aggregate_in_where",
        "pums",
        "SELECT COUNT(*) FROM people WHERE SUM(age) > 1",
        "sql.aggregate_position",
    ),
    (
        "aggregate_in_group_by",
        "pums",
        "SELECT sex, COUNT(*) FROM people GROUP BY 2",
        "sql.aggregate_position",
    ),
    ("quantile_out_of_range", "pums", "SELECT QUANTILE_CONT(age, 1.5) FROM people", "sql.quantile_argument"),
    ("quantile_list", "pums", "SELECT QUANTILE_CONT(age, [0.1, 0.5]) FROM people", "sql.quantile_argument"),
    ("unknown_aggregate", "pums", "SELECT product(age) FROM people", "sql.forbidden_aggregate"),
    # casts, types, functions
    ("cast", "pums", "SELECT COUNT(*) FROM people WHERE CAST(age AS VARCHAR) = '1'", "sql.cast_not_allowed"),
    ("cast_operator", "pums", "SELECT COUNT(*) FROM people WHERE age::VARCHAR = '1'", "sql.cast_not_allowed"),
    (
        "try_cast_blob",
        "pums",
        "SELECT COUNT(*) FROM people WHERE TRY_CAST(age AS BLOB) = 'a'",
        "sql.cast_type",
    ),
    ("type_mismatch_eq", "pums", "SELECT COUNT(*) FROM people WHERE age = 'x'", "sql.type_mismatch"),
    ("type_mismatch_like", "pums", "SELECT COUNT(*) FROM people WHERE sex LIKE 'a'", "sql.type_mismatch"),
    ("type_mismatch_in", "pums", "SELECT COUNT(*) FROM people WHERE age IN (1, 'a')", "sql.type_mismatch"),
    ("where_not_boolean", "pums", "SELECT COUNT(*) FROM people WHERE age", "sql.type_mismatch"),
    (
        "date_part_of_number",
        "pums",
        "SELECT COUNT(*) FROM people WHERE year(age) = 2020",
        "sql.type_mismatch",
    ),
    (
        "like_escape",
        "pums",
        "SELECT COUNT(*) FROM people WHERE TRY_CAST(sex AS VARCHAR) LIKE 'a' ESCAPE '!'",
        "sql.like_escape",
    ),
    (
        "repeat",
        "pums",
        "SELECT COUNT(*) FROM people WHERE repeat('x', 100) = 'x'",
        "sql.function_not_allowed",
    ),
    (
        "regexp",
        "pums",
        "SELECT COUNT(*) FROM people WHERE regexp_matches(TRY_CAST(sex AS VARCHAR), 'a')",
        "sql.function_not_allowed",
    ),
    ("getenv", "pums", "SELECT COUNT(*) FROM people WHERE getenv('HOME') = 'x'", "sql.function_not_allowed"),
    (
        "current_setting",
        "pums",
        "SELECT COUNT(*) FROM people WHERE current_setting('threads') = '1'",
        "sql.function_not_allowed",
    ),
    ("random", "pums", "SELECT COUNT(*) FROM people WHERE random() > 0.5", "sql.function_not_allowed"),
    (
        "now",
        "pums",
        "SELECT COUNT(*) FROM people WHERE now() > DATE '2020-01-01'",
        "sql.function_not_allowed",
    ),
    ("power", "pums", "SELECT COUNT(*) FROM people WHERE age ** 2 > 1", "sql.function_not_allowed"),
    (
        "interval",
        "pums",
        "SELECT COUNT(*) FROM people WHERE INTERVAL 1 DAY > INTERVAL 2 DAY",
        "sql.function_not_allowed",
    ),
    (
        "round_digits",
        "pums",
        "SELECT COUNT(*) FROM people WHERE round(age, 100) > 1",
        "sql.function_not_allowed",
    ),
    (
        "substring_column_start",
        "pums",
        "SELECT COUNT(*) FROM people WHERE substring('abc', age) = 'a'",
        "sql.function_not_allowed",
    ),
    (
        "trunc_unit",
        "pums",
        "SELECT COUNT(*) FROM people WHERE date_trunc('century', DATE '2020-03-01') = DATE '2020-01-01'",
        "sql.function_not_allowed",
    ),
    (
        "extract_epoch",
        "pums",
        "SELECT COUNT(*) FROM people WHERE extract(epoch FROM DATE '2020-03-01') = 1",
        "sql.function_not_allowed",
    ),
    (
        "between_symmetric",
        "pums",
        "SELECT COUNT(*) FROM people WHERE age BETWEEN SYMMETRIC 1 AND 2",
        "sql.function_not_allowed",
    ),
    ("is_number", "pums", "SELECT COUNT(*) FROM people WHERE age IS 1", "sql.function_not_allowed"),
    (
        "collate",
        "pums",
        "SELECT COUNT(*) FROM people WHERE TRY_CAST(sex AS VARCHAR) COLLATE NOCASE = '1'",
        "sql.function_not_allowed",
    ),
    ("bitwise_and", "pums", "SELECT COUNT(*) FROM people WHERE age & 1 = 1", "sql.expression_not_allowed"),
    (
        "integer_division",
        "pums",
        "SELECT COUNT(*) FROM people WHERE age // 2 = 1",
        "sql.expression_not_allowed",
    ),
    ("array_index", "pums", "SELECT COUNT(*) FROM people WHERE [1, 2][1] = 1", "sql.expression_not_allowed"),
    (
        "similar_to",
        "pums",
        "SELECT COUNT(*) FROM people WHERE TRY_CAST(age AS VARCHAR) SIMILAR TO 'a'",
        "sql.expression_not_allowed",
    ),
    ("positional_column", "pums", "SELECT COUNT(*) FROM people WHERE age = #1", "sql.expression_not_allowed"),
    ("invalid_number", "pums", "SELECT COUNT(*) FROM people WHERE age > 1e400", "sql.invalid_literal"),
    (
        "invalid_date",
        "pums",
        "SELECT COUNT(*) FROM people WHERE DATE 'x' > DATE '2019-01-01'",
        "sql.invalid_literal",
    ),
    # clauses
    ("distinct", "pums", "SELECT DISTINCT COUNT(*) FROM people", "sql.distinct"),
    ("offset", "pums", "SELECT COUNT(*) FROM people LIMIT 1 OFFSET 1", "sql.offset"),
    ("limit_expression", "pums", "SELECT COUNT(*) FROM people LIMIT 1 + 1", "sql.limit"),
    ("limit_column", "pums", "SELECT COUNT(*) FROM people LIMIT age", "sql.limit"),
    ("limit_negative", "pums", "SELECT COUNT(*) FROM people LIMIT -1", "sql.limit"),
    ("limit_percent", "pums", "SELECT COUNT(*) FROM people LIMIT 10%", "sql.limit"),
    ("limit_huge", "pums", "SELECT COUNT(*) FROM people LIMIT 99999999999999999999", "sql.limit"),
    ("limit_with_ties", "pums", "SELECT COUNT(*) FROM people ORDER BY 1 LIMIT 5 WITH TIES", "sql.limit"),
    ("tablesample", "pums", "SELECT COUNT(*) FROM people TABLESAMPLE 10%", "sql.sample"),
    ("using_sample", "pums", "SELECT COUNT(*) FROM people USING SAMPLE 10", "sql.sample"),
    ("time_travel", "pums", "SELECT COUNT(*) FROM people AT (VERSION => 1)", "sql.table_modifier"),
    ("table_column_aliases", "pums", "SELECT COUNT(*) FROM people AS p(a, b)", "sql.table_modifier"),
    ("rollup", "pums", "SELECT COUNT(*) FROM people GROUP BY ROLLUP (sex)", "sql.grouping_sets"),
    ("cube", "pums", "SELECT COUNT(*) FROM people GROUP BY CUBE (sex)", "sql.grouping_sets"),
    (
        "grouping_sets",
        "pums",
        "SELECT COUNT(*) FROM people GROUP BY GROUPING SETS ((sex))",
        "sql.grouping_sets",
    ),
    ("with_rollup", "pums", "SELECT COUNT(*) FROM people GROUP BY sex WITH ROLLUP", "sql.grouping_sets"),
    # statements and text
    ("parameter_question", "pums", "SELECT COUNT(*) FROM people WHERE age = ?", "sql.parameter"),
    ("parameter_numbered", "pums", "SELECT COUNT(*) FROM people WHERE age = $1", "sql.parameter"),
    ("parameter_named", "pums", "SELECT COUNT(*) FROM people WHERE age = $x", "sql.parameter"),
    ("multiple_statements", "pums", "SELECT COUNT(*) FROM people; SELECT 1", "sql.multiple_statements"),
    ("parse_error", "pums", "SELECT COUNT(* FROM people", "sql.parse_error"),
    ("misspelt_keyword", "pums", "SELEC COUNT(*) FROM people", "sql.parse_error"),
    ("unterminated_string", "pums", "SELECT COUNT(*) FROM people WHERE sex = 'a", "sql.parse_error"),
    ("empty", "pums", "   ", "sql.parse_error"),
    ("comment_only", "pums", "-- nothing", "sql.parse_error"),
    (
        "nested_parentheses",
        "pums",
        "SELECT COUNT(*) FROM people WHERE " + "(" * 2000 + "age > 1" + ")" * 2000,
        "sql.too_deeply_nested",
    ),
    (
        "nested_functions",
        "pums",
        "SELECT COUNT(*) FROM people WHERE " + "abs(" * 500 + "age" + ")" * 500 + " > 1",
        "sql.too_deeply_nested",
    ),
    # grouping without public keys needs delta (planned here with delta = 0)
    (
        "group_keys_need_delta",
        "diabetes_130",
        "SELECT medical_specialty, COUNT(*) FROM encounters GROUP BY medical_specialty",
        "sql.group_keys_need_delta",
    ),
    (
        "group_expression_needs_delta",
        "pums",
        "SELECT sex + 1 AS s, COUNT(*) FROM people GROUP BY sex + 1",
        "sql.group_keys_need_delta",
    ),
    (
        "mixed_keys_need_delta",
        "diabetes_130",
        "SELECT gender, payer_code, COUNT(*) FROM encounters GROUP BY gender, payer_code",
        "sql.group_keys_need_delta",
    ),
    # too many public key combinations: 9 * 16 * 7 * 15 * 42 = 635,040 > 100,000 (default limit)
    (
        "too_many_groups",
        "adult",
        "SELECT workclass, education, marital_status, occupation, native_country, COUNT(*) "
        "FROM people GROUP BY 1, 2, 3, 4, 5",
        "sql.too_many_groups",
    ),
]


@pytest.fixture(scope="module")
def default_engine(catalog: Catalog) -> Engine:
    """An engine with the default settings (epsilon ceiling 10, key-cell limit 100,000)."""
    return Engine(catalog)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rejected_with_code(
    default_engine: Engine, shared: Registrar, forbidden_values: set[str], case: tuple[str, str, str, str]
) -> None:
    """The construct is rejected at planning time with its rule, and the message holds no data."""
    _, dataset, sql, code = case
    shared(dataset)
    with pytest.raises(QueryRejected) as caught:
        default_engine.plan(dataset, sql, 1.0)
    error = caught.value
    assert error.code == code, error.message
    assert error.rule == code
    assert error.http_status == 400
    assert error.to_body()["error"]["code"] == code
    assert error.message
    assert_no_data(error, sql, forbidden_values)
    with pytest.raises(QueryRejected) as again:
        default_engine.estimate(dataset, sql, 1.0)
    assert again.value.code == code


def test_case_ids_and_queries_are_distinct() -> None:
    """The table holds 40+ distinct queries (the issue's bar), each with its own id."""
    assert len({c[0] for c in CASES}) == len(CASES)
    assert len({c[2] for c in CASES}) == len(CASES)
    assert len(CASES) >= 40


# -- metadata-driven rejections (purpose-built datasets) --------------------------------------------


@pytest.fixture(scope="module")
def unbounded(make_dataset: DatasetMaker) -> tuple[DatasetRecord, DatasetRecord]:
    """Two tiny datasets: one whose table has no contribution bound, one with an unbounded measure."""
    table = pa.table({"uid": [1, 2, 3], "v": [1.5, 2.5, 3.5], "g": ["a", "b", "c"]})
    columns = [
        {"name": "uid", "role": "privacy_unit"},
        {"name": "v", "role": "measure", "lower": 0, "upper": 5},
        {"name": "g", "role": "dimension", "keys": ["a", "b", "c"]},
    ]
    no_bound = make_dataset("no_bound", table, columns, max_rows_per_unit=None)
    unbounded_columns = [*columns[:1], {"name": "v", "role": "measure"}, columns[2]]
    no_measure_bounds = make_dataset("no_measure_bounds", table, unbounded_columns)
    return no_bound, no_measure_bounds


@pytest.mark.parametrize(
    "sql",
    ["SELECT COUNT(*) FROM t", "SELECT g, SUM(v) FROM t GROUP BY g", "SELECT COUNT(DISTINCT uid) FROM t"],
)
def test_table_without_contribution_bound(
    default_engine: Engine, unbounded: tuple[DatasetRecord, DatasetRecord], sql: str
) -> None:
    """A table without max_rows_per_unit is never queried, whatever the query (fail closed)."""
    with pytest.raises(QueryRejected) as caught:
        default_engine.plan(unbounded[0].name, sql, 1.0)
    assert caught.value.code == "sql.no_contribution_bound"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT SUM(v) FROM t",
        "SELECT AVG(v) FROM t",
        "SELECT g, VARIANCE(v) FROM t GROUP BY g",
        "SELECT STDDEV(v) FROM t",
        "SELECT MEDIAN(v) FROM t",
        "SELECT QUANTILE_CONT(v, 0.9) FROM t",
    ],
)
def test_measure_without_bounds(
    default_engine: Engine, unbounded: tuple[DatasetRecord, DatasetRecord], sql: str
) -> None:
    """A measure without bounds is never aggregated (no guessed bounds)."""
    with pytest.raises(QueryRejected) as caught:
        default_engine.plan(unbounded[1].name, sql, 1.0)
    assert caught.value.code == "sql.measure_without_bounds"


def test_unbounded_measure_is_still_countable_and_filterable(
    engine: Engine, unbounded: tuple[DatasetRecord, DatasetRecord]
) -> None:
    """Counting rows where an unbounded measure is set, or filtering on it, needs no bounds."""
    result = engine.query(unbounded[1].name, "SELECT COUNT(v) AS n FROM t WHERE v > 2", 1e6)
    assert result.rows == [[2]]


def test_core_dataset_is_never_queryable(default_engine: Engine, shared: Registrar) -> None:
    """A core (核心) dataset is a catalogue entry only: every query is denied by policy."""
    shared("pums_null")
    with pytest.raises(PolicyDenied) as caught:
        default_engine.plan("pums_null", "SELECT COUNT(*) FROM people", 1.0)
    assert caught.value.code == "policy.core_dataset"
    assert caught.value.http_status == 403


def test_unknown_dataset(default_engine: Engine) -> None:
    """An unregistered dataset is not found (before any SQL rule)."""
    with pytest.raises(SandboxError) as caught:
        default_engine.plan("no_such_dataset", "SELECT COUNT(*) FROM people", 1.0)
    assert caught.value.code == "catalog.dataset_not_found"


# -- budget parameters ------------------------------------------------------------------------------

BUDGETS: list[tuple[str, float, float, str]] = [
    ("epsilon_zero", 0.0, 0.0, "request.epsilon"),
    ("epsilon_negative", -1.0, 0.0, "request.epsilon"),
    ("epsilon_nan", math.nan, 0.0, "request.epsilon"),
    ("epsilon_inf", math.inf, 0.0, "request.epsilon"),
    ("epsilon_over_ceiling", 10.5, 0.0, "request.epsilon"),
    ("delta_negative", 1.0, -1e-9, "request.delta"),
    ("delta_one", 1.0, 1.0, "request.delta"),
    ("delta_nan", 1.0, math.nan, "request.delta"),
]


@pytest.mark.parametrize(("epsilon", "delta", "code"), [b[1:] for b in BUDGETS], ids=[b[0] for b in BUDGETS])
def test_invalid_budget(
    default_engine: Engine, shared: Registrar, epsilon: float, delta: float, code: str
) -> None:
    """Epsilon must be finite, positive and under the ceiling; delta in [0, 1)."""
    shared("pums")
    with pytest.raises(InvalidRequest) as caught:
        default_engine.plan("pums", "SELECT COUNT(*) FROM people", epsilon, delta)
    assert caught.value.code == code
    assert caught.value.http_status == 422


def test_delta_too_small_for_partition_selection(default_engine: Engine, shared: Registrar) -> None:
    """A delta no threshold can meet is a request error, not a crash."""
    shared("pums")
    sql = "SELECT sex + 1 AS s, COUNT(*) FROM people GROUP BY sex + 1"
    with pytest.raises(InvalidRequest) as caught:
        default_engine.plan("pums", sql, 1.0, 1e-300)
    assert caught.value.code == "request.delta"


def test_sql_too_long(default_engine: Engine, shared: Registrar) -> None:
    """SQL text over max_sql_length is refused before parsing."""
    shared("pums")
    sql = "SELECT COUNT(*) FROM people WHERE " + " OR ".join(["age = 1"] * 2000)
    with pytest.raises(PayloadTooLarge) as caught:
        default_engine.plan("pums", sql, 1.0)
    assert caught.value.code == "request.sql_too_long"


# -- messages never carry data ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def forbidden_values(shared_data: Path) -> set[str]:
    """Category values found in the public data but in no metadata YAML: they must never be echoed.

    Only values of 4+ characters with a letter are kept, so that they cannot occur by chance in a
    message (codes like 'MC' or numbers would).
    """
    metadata = "\n".join(p.read_text(encoding="utf-8") for p in SHARED_METADATA.glob("*.yaml"))
    values: set[str] = set()
    sources = {
        "diabetes_130/encounters.parquet": ["medical_specialty", "payer_code", "diag_1", "diag_2", "diag_3"],
        "nycflights13/flights.parquet": ["dest", "tailnum"],
    }
    for path, columns in sources.items():
        table = pq.read_table(shared_data / path, columns=columns)
        for column in columns:
            for value in table.column(column).unique().to_pylist():
                if isinstance(value, str) and len(value) >= 4 and re.search("[A-Za-z]", value):
                    values.add(value)
    return {v for v in values if v not in metadata}


def assert_no_data(error: SandboxError, sql: str, forbidden: set[str]) -> None:
    """No data value (absent from the query) appears in the error's body."""
    text = str(error.to_body())
    candidates = {v for v in forbidden if v in text and v not in sql}
    leaked = {v for v in candidates if re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text)}
    assert not leaked, f"data values in the message: {sorted(leaked)[:5]}"


def test_forbidden_values_are_real(forbidden_values: set[str]) -> None:
    """The data-value list used above is not empty (it holds specialties, ICD-9 codes, tail numbers)."""
    assert len(forbidden_values) > 100
    assert "Cardiology" in forbidden_values


def test_messages_of_data_dependent_columns_carry_no_values(
    default_engine: Engine, shared: Registrar, forbidden_values: set[str]
) -> None:
    """Rejections about data-dependent columns name the column, never its values."""
    shared("diabetes_130")
    queries = [
        "SELECT medical_specialty, COUNT(*) FROM encounters GROUP BY medical_specialty",
        "SELECT diag_1, AVG(time_in_hospital) FROM encounters GROUP BY diag_1",
        "SELECT COUNT(*) FROM encounters WHERE medical_specialty = 1",
        "SELECT SUM(medical_specialty) FROM encounters",
        "SELECT medical_specialty FROM encounters",
        "SELECT COUNT(DISTINCT payer_code) FROM encounters",
        "SELECT MIN(diag_1) FROM encounters",
    ]
    for sql in queries:
        with pytest.raises(QueryRejected) as caught:
            default_engine.plan("diabetes_130", sql, 1.0)
        assert_no_data(caught.value, sql, forbidden_values)
