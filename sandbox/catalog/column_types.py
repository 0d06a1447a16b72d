"""DuckDB column types as the catalog sees them, and the fixed-point scale of clamped measures."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from duckdb.sqltypes import DuckDBPyType

from sandbox.catalog.models import ColumnSpec

INTEGER_TYPE_IDS = frozenset(
    {
        "tinyint",
        "smallint",
        "integer",
        "bigint",
        "hugeint",
        "utinyint",
        "usmallint",
        "uinteger",
        "ubigint",
        "uhugeint",
    }
)
FLOAT_TYPE_IDS = frozenset({"float", "double"})
DECIMAL_TYPE_ID = "decimal"
NON_SCALAR_TYPE_IDS = frozenset({"list", "array", "struct", "map", "union", "blob", "bit", "variant"})
# Every timestamp is stored as one kind, TIMESTAMP (microseconds, no time zone, UTC wall clock):
# comparing TIMESTAMP_NS with TIMESTAMP raises in DuckDB for values outside 1677-2262, and values
# 1 ns apart would be distinct groups that become one Python value.
TIMESTAMP_VARIANT_IDS = frozenset({"timestamp_ns", "timestamp_ms", "timestamp_s", "timestamp with time zone"})
STORED_TIMESTAMP = "TIMESTAMP"
TEMPORAL_RANGE = {
    "DATE": ("0001-01-01", "9999-12-31"),
    "TIMESTAMP": ("0001-01-01 00:00:00", "9999-12-31 23:59:59.999999"),
}
# Types an owner may declare with ``type:`` (and the only ones a CSV column may load as).
DECLARABLE_TYPE_IDS = (
    INTEGER_TYPE_IDS - {"hugeint", "uhugeint"}
    | FLOAT_TYPE_IDS
    | {
        DECIMAL_TYPE_ID,
        "varchar",
        "boolean",
        "date",
        "timestamp",
    }
)

DEFAULT_FLOAT_SCALE = 4
BIGINT_MAX = 2**63 - 1
# Limits that keep every generated statement's arithmetic exact for any data (docs/catalog.md):
# a table holds at most 2**40 rows; a clamped measure's bounds are at most 2**43 fixed-point units
# in absolute value, so a sum of squares (< 2**86 per row) over every row fits HUGEINT (2**127),
# sums fit in 2**83 and the quantile offset ``x - lower`` in BIGINT; and k times the measure's
# range stays below 2**62, the sensitivity OpenDP's 64-bit mechanisms take.
MAX_TABLE_ROWS = 2**40
MAX_FIXED_POINT = 2**43
MAX_SENSITIVITY = 2**62


def is_integer(dtype: DuckDBPyType) -> bool:
    """Whether the type is one of DuckDB's integer types."""
    return dtype.id in INTEGER_TYPE_IDS


def is_float(dtype: DuckDBPyType) -> bool:
    """Whether the type is FLOAT or DOUBLE."""
    return dtype.id in FLOAT_TYPE_IDS


def is_numeric(dtype: DuckDBPyType) -> bool:
    """Whether a measure may have this type: integer, DECIMAL, FLOAT or DOUBLE."""
    return is_integer(dtype) or is_float(dtype) or dtype.id == DECIMAL_TYPE_ID


def stored_type_sql(dtype: DuckDBPyType) -> str | None:
    """The SQL type a source column is cast to at ingest, or None when it is stored as it is."""
    return STORED_TIMESTAMP if dtype.id in TIMESTAMP_VARIANT_IDS else None


def stored_value_sql(dtype: DuckDBPyType, value: str) -> str:
    """The SQL storing a source value: timestamps as TIMESTAMP; dates and timestamps outside years
    1-9999 (``infinity`` included) as NULL.

    Such values have no Python (or JSON client) value: DuckDB hands ``infinity`` over as 9999-12-31,
    so a released group of it would look like another, and later years come back as text. A far
    date also reaches DuckDB's optimizer through the column's statistics, where ``date_trunc``
    raises for an out-of-range minimum: whether a query runs would depend on one row.
    """
    cast = stored_type_sql(dtype)
    if cast is not None:
        value = f"CAST({value} AS {cast})"
    kind = (
        "TIMESTAMP" if cast is not None or dtype.id == "timestamp" else "DATE" if dtype.id == "date" else None
    )
    if kind is None:
        return value
    low, high = TEMPORAL_RANGE[kind]
    return f"CASE WHEN {value} BETWEEN {kind} '{low}' AND {kind} '{high}' THEN {value} END"


def is_scalar(dtype: DuckDBPyType) -> bool:
    """Whether a dimension or privacy unit may have this type (no nested or binary types)."""
    return dtype.id not in NON_SCALAR_TYPE_IDS


def decimal_scale(dtype: DuckDBPyType) -> int:
    """The scale ``s`` of a ``DECIMAL(p, s)`` type."""
    scale = dict(dtype.children)["scale"]
    if not isinstance(scale, int):
        raise TypeError("DECIMAL type without an integer scale")
    return scale


def measure_scale(dtype: DuckDBPyType, spec: ColumnSpec) -> int:
    """Decimal places kept in a measure's clamped fixed-point column.

    0 for integers, the type's scale for DECIMAL, ``spec.scale`` (default 4) for FLOAT/DOUBLE.
    """
    if is_integer(dtype):
        return 0
    if dtype.id == DECIMAL_TYPE_ID:
        return decimal_scale(dtype)
    return DEFAULT_FLOAT_SCALE if spec.scale is None else spec.scale


def to_fixed_point(value: float, scale: int) -> int:
    """``round(value * 10**scale)``, halves away from zero (DuckDB's ``round``), computed exactly."""
    scaled = Decimal(repr(value)).scaleb(scale)
    return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def is_fixed_point_exact(value: float, scale: int) -> bool:
    """Whether ``value`` (as written, shortest repr) is a whole multiple of ``10**-scale``."""
    scaled = Decimal(repr(value)).scaleb(scale)
    return scaled == scaled.to_integral_value()


def fixed_point_literal(units: int, scale: int) -> str:
    """The SQL numeric literal of ``units * 10**-scale`` in plain (non-exponent) notation."""
    return format(Decimal(units).scaleb(-scale), "f")
