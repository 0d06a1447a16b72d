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

DEFAULT_FLOAT_SCALE = 4
BIGINT_MAX = 2**63 - 1


def is_integer(dtype: DuckDBPyType) -> bool:
    """Whether the type is one of DuckDB's integer types."""
    return dtype.id in INTEGER_TYPE_IDS


def is_float(dtype: DuckDBPyType) -> bool:
    """Whether the type is FLOAT or DOUBLE."""
    return dtype.id in FLOAT_TYPE_IDS


def is_numeric(dtype: DuckDBPyType) -> bool:
    """Whether a measure may have this type: integer, DECIMAL, FLOAT or DOUBLE."""
    return is_integer(dtype) or is_float(dtype) or dtype.id == DECIMAL_TYPE_ID


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
