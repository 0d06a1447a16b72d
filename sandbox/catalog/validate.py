"""Validation of a metadata document against its rules and its sources' schemas (no data is read).

Every check appends a readable sentence naming the table and column and the rule; callers get
all problems at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pydantic
import yaml
from duckdb.sqltypes import DuckDBPyType
from pydantic_core import ErrorDetails

from sandbox.catalog import column_types
from sandbox.catalog.models import LOADED_ROLES, ColumnRole, ColumnSpec, DatasetMetadata, TableSpec
from sandbox.catalog.sources import Source, SourceError, open_source, resolve, with_declared_types

COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
CLAMPED_SUFFIX = "__clamped"
_SCALAR_KEY_TYPES = (str, int, float, bool, date, datetime, time, Decimal)


@dataclass
class Validation:
    """The outcome of validating one metadata document."""

    metadata: DatasetMetadata | None
    sources: dict[str, Source] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def validate_document(metadata_path: Path, source_root: Path | None = None) -> Validation:
    """Parse, model-check, rule-check and source-check one metadata file."""
    metadata, problems = load_metadata(metadata_path)
    if metadata is None:
        return Validation(None, problems=problems)
    base = source_root if source_root is not None else metadata_path.parent
    problems = check_metadata(metadata)
    sources, source_problems = check_sources(metadata, base)
    return Validation(metadata, sources, problems + source_problems)


def load_metadata(path: Path) -> tuple[DatasetMetadata | None, list[str]]:
    """The parsed metadata, or ``None`` with the YAML or model problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None, [f"metadata file {path.name!r} cannot be read as UTF-8 text"]
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        return None, [_yaml_problem(exc)]
    if not isinstance(raw, dict):
        return None, ["metadata must be a YAML mapping with the keys dataset, title, owner, tables, ..."]
    try:
        return DatasetMetadata.model_validate(raw), []
    except pydantic.ValidationError as exc:
        return None, [_model_problem(error, raw) for error in exc.errors()]


def check_metadata(metadata: DatasetMetadata) -> list[str]:
    """Rules that need the metadata only."""
    problems: list[str] = []
    if not metadata.owner.strip():
        problems.append("owner must not be empty")
    seen: set[str] = set()
    for table in metadata.tables:
        if table.name in seen:
            problems.append(f"table {table.name!r} is declared more than once; table names must be unique")
        seen.add(table.name)
        problems.extend(_check_table(table))
    return problems


def check_sources(metadata: DatasetMetadata, base: Path) -> tuple[dict[str, Source], list[str]]:
    """Rules that need each table's source schema (the file's footer or first block, no data)."""
    sources: dict[str, Source] = {}
    problems: list[str] = []
    with duckdb.connect() as con:
        for table in metadata.tables:
            try:
                source = open_source(resolve(base, table.source), con)
            except SourceError as exc:
                problems.append(f"table {table.name!r}: source {table.source!r} {exc}")
                continue
            declared, type_problems = _declared_types(table, source)
            problems.extend(type_problems)
            if source.is_csv:
                source = with_declared_types(source, declared, con)
            sources[table.name] = source
            for column in table.columns:
                problems.extend(_check_column_source(con, table, column, source))
    return sources, problems


def _declared_types(table: TableSpec, source: Source) -> tuple[dict[str, DuckDBPyType], list[str]]:
    """The declared type of each loaded column (by lower-cased source name), and type problems.

    Types come from the metadata, never from values: a CSV column must declare its type; a
    Parquet column's schema type (the file's own declaration) must match a declared one.
    """
    declared: dict[str, DuckDBPyType] = {}
    problems: list[str] = []
    allowed = ", ".join(sorted(t.upper() for t in column_types.DECLARABLE_TYPE_IDS))
    for column in table.columns:
        found = source.column(column.name)
        if column.role not in LOADED_ROLES or found is None:
            continue
        where = f"table {table.name!r}, column {column.name!r}"
        if column.type is None:
            if source.is_csv:
                problems.append(
                    f"{where}: a CSV source needs a declared type (type: one of {allowed}), so that no "
                    "value can change the column's type"
                )
            continue
        try:
            dtype = DuckDBPyType(column.type)
        except (duckdb.Error, ValueError, TypeError):
            problems.append(f"{where}: type {column.type!r} is not a DuckDB type")
            continue
        if dtype.id not in column_types.DECLARABLE_TYPE_IDS:
            problems.append(f"{where}: type {column.type!r} cannot be declared; use one of {allowed}")
            continue
        stored = column_types.stored_type_sql(found.duckdb_type) or str(found.duckdb_type)
        if not source.is_csv and stored != str(dtype):
            problems.append(f"{where}: declared type {dtype} but the Parquet file's column is {stored}")
            continue
        declared[found.name.lower()] = dtype
    return declared, problems


def _check_table(table: TableSpec) -> list[str]:
    where = f"table {table.name!r}"
    problems: list[str] = []
    names: set[str] = set()
    for column in table.columns:
        lowered = column.name.lower()
        if lowered in names:
            problems.append(
                f"{where}: column {column.name!r} is declared more than once; column names must be unique"
            )
        names.add(lowered)
        problems.extend(_check_column(table, column))
    if not table.columns:
        problems.append(f"{where}: declares no columns")
    if table.public or table.join_keys is not None:
        return problems + _check_public_table(table)
    if table.privacy_unit is None:
        if table.max_rows_per_unit != 1:
            problems.append(
                f"{where}: privacy_unit is null (row-level privacy: each row is its own unit), "
                "which requires max_rows_per_unit: 1"
            )
    else:
        unit = table.column(table.privacy_unit)
        if unit is None:
            problems.append(f"{where}: privacy_unit {table.privacy_unit!r} is not a declared column")
        elif unit.role is not ColumnRole.PRIVACY_UNIT:
            problems.append(
                f"{where}: privacy_unit {table.privacy_unit!r} must be declared with role privacy_unit, "
                f"not {unit.role.value}"
            )
    return problems


def _check_public_table(table: TableSpec) -> list[str]:
    """A public lookup table holds no person: no privacy unit, no bound, dimensions only, and the
    columns others may join on (each unique, checked when the rows are loaded)."""
    where = f"table {table.name!r}"
    if not table.public:
        return [f"{where}: join_keys are declared on public tables only (public: true)"]
    problems = []
    if table.privacy_unit is not None or table.max_rows_per_unit is not None:
        problems.append(f"{where}: a public table has no privacy_unit and no max_rows_per_unit")
    if not table.join_keys:
        problems.append(f"{where}: a public table declares the join_keys other tables may join on")
    for key in table.join_keys or []:
        column = table.column(key)
        if column is None or column.role is not ColumnRole.DIMENSION:
            problems.append(f"{where}: join key {key!r} must be a declared dimension column")
    for column in table.columns:
        if column.role not in (ColumnRole.DIMENSION, ColumnRole.IDENTIFIER):
            problems.append(
                f"{where}, column {column.name!r}: a public table has dimension columns only, "
                f"not a {column.role.value}"
            )
    return problems


def _check_column(table: TableSpec, column: ColumnSpec) -> list[str]:
    where = f"table {table.name!r}, column {column.name!r}"
    problems: list[str] = []
    if not COLUMN_NAME.match(column.name):
        problems.append(
            f"{where}: a column name must be a plain identifier (letters, digits and underscores, "
            "not starting with a digit, at most 63 characters)"
        )
    elif column.name.lower().endswith(CLAMPED_SUFFIX):
        problems.append(
            f"{where}: column names ending in {CLAMPED_SUFFIX!r} are reserved for clamped measures"
        )
    if column.role is ColumnRole.PRIVACY_UNIT and (
        table.privacy_unit is None or table.privacy_unit.lower() != column.name.lower()
    ):
        problems.append(
            f"{where}: has role privacy_unit, so it must be the table's privacy_unit "
            f"(which is {table.privacy_unit!r}); a table has at most one privacy unit column"
        )
    weights = column.preview_weights
    if weights is not None and (
        column.keys is None
        or len(weights) != len(column.keys)
        or not all(math.isfinite(w) and w >= 0 for w in weights)
        or sum(weights) <= 0
    ):
        problems.append(
            f"{where}: preview_weights need keys, one finite non-negative weight per key, not all zero"
        )
    if column.keys is not None and column.role is not ColumnRole.DIMENSION:
        problems.append(f"{where}: keys are allowed only on dimensions, not on a {column.role.value}")
    has_bounds = column.lower is not None or column.upper is not None
    if has_bounds and column.role is not ColumnRole.MEASURE:
        problems.append(
            f"{where}: lower/upper bounds are allowed only on measures, not on a {column.role.value}"
        )
    if column.scale is not None and column.role is not ColumnRole.MEASURE:
        problems.append(f"{where}: scale is allowed only on measures, not on a {column.role.value}")
    if column.role is ColumnRole.MEASURE:
        problems.extend(_check_bounds(where, column))
    if column.role is ColumnRole.DIMENSION and column.keys is not None:
        problems.extend(_check_key_values(where, column.keys))
    return problems


def _check_bounds(where: str, column: ColumnSpec) -> list[str]:
    if (column.lower is None) != (column.upper is None):
        return [
            f"{where}: a measure needs both lower and upper bounds, or neither (then it is not aggregatable)"
        ]
    if column.lower is None or column.upper is None:
        return []
    problems = [
        f"{where}: {label} bound must be a finite number"
        for label, bound in (("lower", column.lower), ("upper", column.upper))
        if not math.isfinite(bound)
    ]
    if not problems and column.lower > column.upper:
        problems.append(f"{where}: lower bound {column.lower} is greater than upper bound {column.upper}")
    return problems


def _check_key_values(where: str, keys: list[Any]) -> list[str]:
    if any(key is not None and not isinstance(key, _SCALAR_KEY_TYPES) for key in keys):
        return [f"{where}: keys must be scalar values (strings, numbers, booleans, dates or null)"]
    if _has_duplicates(keys):
        return [f"{where}: keys contain duplicates"]
    return []


def _check_column_source(
    con: duckdb.DuckDBPyConnection, table: TableSpec, column: ColumnSpec, source: Source
) -> list[str]:
    where = f"table {table.name!r}, column {column.name!r}"
    if column.name.lower() in source.duplicate_names:
        return [f"{where}: matches several source columns whose names differ only in case"]
    found = source.column(column.name)
    if found is None:
        return [f"{where}: is declared but not present in the source file"]
    dtype = found.duckdb_type
    if column.role is ColumnRole.PRIVACY_UNIT and not column_types.is_scalar(dtype):
        return [f"{where}: a privacy unit must have a scalar type, but the source type is {dtype}"]
    if column.role is ColumnRole.DIMENSION:
        return _check_dimension_source(con, where, column, dtype)
    if column.role is ColumnRole.MEASURE:
        return _check_measure_source(where, column, dtype, table.max_rows_per_unit or 1)
    return []


def _check_dimension_source(
    con: duckdb.DuckDBPyConnection, where: str, column: ColumnSpec, dtype: DuckDBPyType
) -> list[str]:
    if not column_types.is_scalar(dtype):
        return [f"{where}: a dimension must have a scalar type (no LIST, STRUCT, MAP or BLOB), not {dtype}"]
    if column.keys is None or _check_key_values(where, column.keys):
        return []
    if dtype.id != "boolean" and any(isinstance(key, bool) for key in column.keys):
        return [
            f"{where}: keys include a boolean but the column type is {dtype} "
            "(YAML reads unquoted yes/no/on/off/true/false as booleans: quote them)"
        ]
    cast_keys, bad = _cast_keys(con, column.keys, dtype)
    if bad:
        return [f"{where}: {bad} of the keys cannot be cast exactly to the column type {dtype}"]
    if _has_duplicates(cast_keys):
        return [f"{where}: keys contain duplicates once cast to the column type {dtype}"]
    return []


def _check_measure_source(where: str, column: ColumnSpec, dtype: DuckDBPyType, k: int) -> list[str]:
    if not column_types.is_numeric(dtype):
        return [f"{where}: a measure must be numeric (integer, DECIMAL, FLOAT or DOUBLE), not {dtype}"]
    if column.scale is not None and not column_types.is_float(dtype):
        return [f"{where}: scale applies only to FLOAT/DOUBLE measures; this one is {dtype}"]
    if column.lower is None or column.upper is None:
        return []
    if not (math.isfinite(column.lower) and math.isfinite(column.upper)):
        return []
    scale = column_types.measure_scale(dtype, column)
    problems = []
    for label, bound in (("lower", column.lower), ("upper", column.upper)):
        if not column_types.is_fixed_point_exact(bound, scale):
            hint = "round it or raise scale" if column_types.is_float(dtype) else "round it"
            problems.append(
                f"{where}: {label} bound {bound} is not a multiple of 10**-{scale}, the column's "
                f"fixed-point step ({hint})"
            )
        elif abs(column_types.to_fixed_point(bound, scale)) > column_types.MAX_FIXED_POINT:
            problems.append(
                f"{where}: {label} bound times 10**{scale} exceeds 2**43 "
                f"({column_types.MAX_FIXED_POINT}), the largest fixed-point bound whose sums and sums "
                "of squares stay exact over any table; narrow the bounds"
                + (" or lower scale" if column_types.is_float(dtype) else "")
            )
    if problems:
        return problems
    lower = column_types.to_fixed_point(column.lower, scale)
    upper = column_types.to_fixed_point(column.upper, scale)
    if k * max(abs(lower), abs(upper), upper - lower) > column_types.MAX_SENSITIVITY:
        problems.append(
            f"{where}: max_rows_per_unit ({k}) times the bounds' range in fixed-point units exceeds "
            f"2**62, the largest sensitivity the noise mechanisms take; narrow the bounds or lower "
            "max_rows_per_unit"
        )
    return problems


def _cast_keys(con: duckdb.DuckDBPyConnection, keys: list[Any], dtype: DuckDBPyType) -> tuple[list[Any], int]:
    """The non-null keys cast to ``dtype`` with DuckDB ``TRY_CAST``, and how many failed or lost value.

    Keys are cast in one query per Python type; a numeric key cast to a numeric column must
    compare equal to its cast (so 1.5 is not silently rounded into a BIGINT key).
    """
    numeric_column = column_types.is_numeric(dtype)
    groups: dict[type, list[Any]] = {}
    for key in keys:
        if key is not None:
            groups.setdefault(type(key), []).append(key)
    cast_keys: list[Any] = []
    bad = 0
    for kind, values in groups.items():
        exact = f"TRY_CAST(k AS {dtype}) = k" if numeric_column and kind in (int, float, Decimal) else "true"
        try:
            rows = con.execute(
                f"SELECT TRY_CAST(k AS {dtype}), {exact} FROM unnest($1) AS u(k)", [values]
            ).fetchall()
        except duckdb.Error:
            bad += len(values)
            continue
        for cast, lossless in rows:
            if cast is None or not lossless:
                bad += 1
            else:
                cast_keys.append(cast)
    return cast_keys, bad


def _has_duplicates(values: list[Any]) -> bool:
    seen: set[Hashable] = set()
    for value in values:
        marker = (type(value) is bool, value)
        if marker in seen:
            return True
        seen.add(marker)
    return False


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "it cannot be parsed"
    if mark is not None:
        return f"metadata is not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"metadata is not valid YAML: {problem}"


def _model_problem(error: ErrorDetails, raw: dict[str, Any]) -> str:
    return f"{_location(error['loc'], raw)}: {_model_message(error)}"


def _model_message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a known key"
    if kind == "string_pattern_mismatch":
        return (
            "must be lowercase letters, digits and underscores, starting with a letter "
            "(at most 63 characters)"
        )
    return str(error["msg"])


def _location(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = raw
    index = 0
    while index < len(loc):
        step = loc[index]
        following = loc[index + 1] if index + 1 < len(loc) else None
        if step in ("tables", "columns") and isinstance(following, int):
            node = _item(node, step, following)
            label = "table" if step == "tables" else "column"
            name = node.get("name") if isinstance(node, dict) else None
            parts.append(f"{label} {name!r}" if isinstance(name, str) else f"{label} #{following + 1}")
            index += 2
            continue
        rest = ".".join(str(part) for part in loc[index:])
        parts.append(f"key {rest!r}")
        break
    return ", ".join(parts) if parts else "metadata"


def _item(node: Any, key: str, position: int) -> Any:
    items = node.get(key) if isinstance(node, dict) else None
    if isinstance(items, list) and 0 <= position < len(items):
        return items[position]
    return None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects a mapping with the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
