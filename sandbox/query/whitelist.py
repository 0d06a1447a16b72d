"""The one SQL whitelist: every construct the engine accepts, and the rule that rejects the rest.

Nothing outside these tables reaches DuckDB. Each scalar function listed here is *total*: it returns a
value (possibly NULL, inf or NaN) for every input and never raises, once the rewrite has cast numeric
operands to DOUBLE (DuckDB raises on integer overflow, never on DOUBLE overflow).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

DIALECT: Dialect = Dialect.get_or_raise("duckdb")
"""The one SQL dialect, analysts' and generated: an instance (a name would build a new one per call)."""


class Kind(StrEnum):
    """Type category of a scalar expression, for type checking without data."""

    NUMERIC = "numeric"
    STRING = "string"
    DATE = "date"
    TIMESTAMP = "timestamp"
    BOOLEAN = "boolean"
    NULL = "null"
    OTHER = "other"


TEMPORAL = frozenset({Kind.DATE, Kind.TIMESTAMP})

COMPARISONS: tuple[type[exp.Expression], ...] = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
)
BOOLEAN_CONNECTIVES: tuple[type[exp.Expression], ...] = (exp.And, exp.Or)
ARITHMETIC: tuple[type[exp.Expression], ...] = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)

# numeric -> numeric; operands are cast to DOUBLE by the rewrite
NUMERIC_FUNCTIONS: tuple[type[exp.Expression], ...] = (exp.Abs, exp.Floor, exp.Ceil, exp.Sign)
# string -> string / number / boolean
STRING_FUNCTIONS: tuple[type[exp.Expression], ...] = (exp.Lower, exp.Upper)
STRING_LENGTH: tuple[type[exp.Expression], ...] = (exp.Length,)
STRING_PREDICATES: tuple[type[exp.Expression], ...] = (exp.StartsWith, exp.Contains)
PATTERN_MATCH: tuple[type[exp.Expression], ...] = (exp.Like, exp.ILike)
# temporal -> number
DATE_PARTS: tuple[type[exp.Expression], ...] = (
    exp.Year,
    exp.Quarter,
    exp.Month,
    exp.Week,
    exp.Day,
    exp.DayOfMonth,
    exp.DayOfYear,
    exp.DayOfWeek,
    exp.DayOfWeekIso,
    exp.Hour,
    exp.Minute,
)
TRUNC_UNITS = frozenset({"year", "quarter", "month", "week", "day", "hour", "minute"})
EXTRACT_PARTS = frozenset(
    {"year", "quarter", "month", "week", "day", "dayofweek", "isodow", "dayofyear", "hour", "minute"}
)
MAX_ROUND_DIGITS = 10
# Deepest accepted syntax tree (a level per nested call, parenthesis, operator or ANDed condition):
# checking and rebuilding a tree recurse, and must never reach Python's recursion limit.
MAX_EXPRESSION_DEPTH = 128

# TRY_CAST targets (CAST itself is only accepted on a literal, checked at planning time)
CAST_TARGETS: dict[Any, Kind] = {
    exp.DataType.Type.TINYINT: Kind.NUMERIC,
    exp.DataType.Type.SMALLINT: Kind.NUMERIC,
    exp.DataType.Type.INT: Kind.NUMERIC,
    exp.DataType.Type.BIGINT: Kind.NUMERIC,
    exp.DataType.Type.DOUBLE: Kind.NUMERIC,
    exp.DataType.Type.FLOAT: Kind.NUMERIC,
    exp.DataType.Type.DECIMAL: Kind.NUMERIC,
    exp.DataType.Type.VARCHAR: Kind.STRING,
    exp.DataType.Type.TEXT: Kind.STRING,
    exp.DataType.Type.DATE: Kind.DATE,
    exp.DataType.Type.TIMESTAMP: Kind.TIMESTAMP,
    exp.DataType.Type.TIMESTAMPNTZ: Kind.TIMESTAMP,  # sqlglot's reading of DuckDB's TIMESTAMP
    exp.DataType.Type.BOOLEAN: Kind.BOOLEAN,
}

# Aggregates that are accepted, by sqlglot node class.
COUNT_NODES: tuple[type[exp.Expression], ...] = (exp.Count,)
SUM_NODES: tuple[type[exp.Expression], ...] = (exp.Sum,)
AVG_NODES: tuple[type[exp.Expression], ...] = (exp.Avg,)
VARIANCE_NODES: tuple[type[exp.Expression], ...] = (exp.Variance,)
STDDEV_NODES: tuple[type[exp.Expression], ...] = (exp.Stddev, exp.StddevSamp)
QUANTILE_NODES: tuple[type[exp.Expression], ...] = (exp.Median, exp.PercentileCont, exp.Quantile)
ACCEPTED_AGGREGATES = COUNT_NODES + SUM_NODES + AVG_NODES + VARIANCE_NODES + STDDEV_NODES + QUANTILE_NODES

# Statement-level constructs, each with the rule (error code) that rejects it.
FORBIDDEN_CLAUSES: dict[str, tuple[str, str]] = {
    "with_": ("sql.cte", "WITH (common table expressions) is not allowed; query one table directly."),
    "laterals": ("sql.join", "LATERAL is not allowed; query one table at a time."),
    "windows": ("sql.window_function", "WINDOW clauses are not allowed."),
    "qualify": ("sql.window_function", "QUALIFY is not allowed."),
    "distinct": ("sql.distinct", "SELECT DISTINCT returns raw values; use GROUP BY with an aggregate."),
    "offset": ("sql.offset", "OFFSET is not allowed; use ORDER BY with LIMIT."),
    "sample": ("sql.sample", "Sampling clauses are not allowed."),
    "into": ("sql.statement_not_allowed", "SELECT INTO writes data and is not allowed."),
    "settings": ("sql.statement_not_allowed", "Query settings are not allowed."),
    "locks": ("sql.statement_not_allowed", "Locking clauses are not allowed."),
    "kind": ("sql.statement_not_allowed", "Only a plain SELECT is allowed."),
    "prewhere": ("sql.statement_not_allowed", "PREWHERE is not allowed."),
    "connect": ("sql.statement_not_allowed", "CONNECT BY is not allowed."),
    "match": ("sql.statement_not_allowed", "MATCH_RECOGNIZE is not allowed."),
    "cluster": ("sql.statement_not_allowed", "CLUSTER BY is not allowed."),
    "distribute": ("sql.statement_not_allowed", "DISTRIBUTE BY is not allowed."),
    "sort": ("sql.statement_not_allowed", "SORT BY is not allowed."),
    "pivots": ("sql.statement_not_allowed", "PIVOT is not allowed."),
}
SELECT_ARGS_ALLOWED = frozenset(
    {"expressions", "from", "from_", "joins", "where", "group", "having", "order", "limit"}
)  # joins: only the kinds and conditions of joins.py

# Aggregates that would reveal individual values or raw lists.
RAW_VALUE_AGGREGATES: tuple[type[exp.Expression], ...] = (
    exp.Min,
    exp.Max,
    exp.First,
    exp.Last,
    exp.AnyValue,
    exp.ArgMax,
    exp.ArgMin,
    exp.ArrayAgg,
    exp.GroupConcat,
    exp.Mode,
    exp.VariancePop,
    exp.StddevPop,
    exp.PercentileDisc,
    exp.ApproxDistinct,
    exp.ApproxQuantile,
    exp.CountIf,
    exp.LogicalAnd,
    exp.LogicalOr,
    exp.BitwiseAndAgg,
    exp.BitwiseOrAgg,
    exp.BitwiseXorAgg,
)

# Statements sqlglot may fail to parse (e.g. EXPORT DATABASE), named in the rejection instead of a
# parse error.
STATEMENT_KEYWORDS = frozenset(
    {
        "ALTER",
        "ATTACH",
        "BEGIN",
        "CALL",
        "CHECKPOINT",
        "COMMENT",
        "COMMIT",
        "COPY",
        "CREATE",
        "DEALLOCATE",
        "DELETE",
        "DESCRIBE",
        "DETACH",
        "DROP",
        "EXECUTE",
        "EXPLAIN",
        "EXPORT",
        "FORCE",
        "GRANT",
        "IMPORT",
        "INSERT",
        "INSTALL",
        "LOAD",
        "MERGE",
        "PRAGMA",
        "PREPARE",
        "RESET",
        "REVOKE",
        "ROLLBACK",
        "SET",
        "SHOW",
        "SUMMARIZE",
        "TRUNCATE",
        "UPDATE",
        "USE",
        "VACUUM",
    }
)

# Names that are system catalogs or table functions, for a precise message.
SYSTEM_CATALOG_PREFIXES = ("duckdb_", "pragma_", "sqlite_", "pg_")
SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog", "system", "temp"})
