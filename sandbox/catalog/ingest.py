"""Loading validated tables into a new, service-owned DuckDB file.

Only privacy-unit, dimension and measure columns are loaded (identifiers and undeclared columns
never reach the file). Each bounded measure gets a ``<name>__clamped`` BIGINT fixed-point column,
and each table with a privacy unit keeps at most ``max_rows_per_unit`` uniformly chosen rows per
unit (rows with a NULL unit are dropped).

Parquet sources are read by DuckDB's own Parquet reader (parallel, no Python per batch), in row
ranges for progress; each column is cast to the type validation saw through Arrow, so the stored
types do not depend on the reader. CSV sources are streamed through Arrow with the declared types.
Rows are stored in source order (``preserve_insertion_order``; the content fingerprint is over
stored order), except that the kept rows of units over their bound come last.

A Parquet table with at most one row per unit (``max_rows_per_unit: 1``) is loaded first and its
units counted once, on the stored table: that one pass is both the check of the bound and the
test whether bounding was needed. If some unit has more rows, rows beyond its bound have reached
the file, so the whole file is discarded and built again, bounding that table as it is read (the
path every other bounded table takes: units over the bound listed first, from the source).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from sandbox.catalog import column_types
from sandbox.catalog.fingerprint import content_sha256, file_sha256
from sandbox.catalog.models import (
    LOADED_ROLES,
    ColumnRole,
    ColumnSpec,
    DatasetMetadata,
    StoredColumn,
    StoredTable,
    TableSpec,
)
from sandbox.catalog.sources import BATCH_ROWS, Source, batches, count_rows, empty_table, row_ranges
from sandbox.errors import InternalError, MetadataInvalid

Progress = Callable[[int, int], None]
INGEST_MEMORY_LIMIT = "1200MB"
_BATCH_VIEW = "ingest_batch"
_SCRATCH = "scratch"
_ROW_ID = "__row_id"
_OVER = "__units_over_bound"
PARQUET_CHUNKS = 32  # statements per Parquet table (progress steps), ranges of at least BATCH_ROWS


@dataclass(frozen=True)
class ClampedMeasure:
    """How one bounded measure is stored as a fixed-point integer column."""

    column: str
    physical: str
    scale: int
    lower: int
    upper: int
    is_float: bool

    def expression(self) -> str:
        """SQL of ``round(clamp(value, lower, upper) * 10**scale)`` as BIGINT; NULL (and NaN) give NULL."""
        value = quote(self.column)
        lower = column_types.fixed_point_literal(self.lower, self.scale)
        upper = column_types.fixed_point_literal(self.upper, self.scale)
        nan = f"WHEN isnan({value}) THEN NULL " if self.is_float else ""
        scaled = value if self.scale == 0 else f"round({value} * {10**self.scale})"
        return (
            f"CASE WHEN {value} IS NULL THEN NULL {nan}"
            f"WHEN {value} < {lower} THEN {self.lower}::BIGINT "
            f"WHEN {value} > {upper} THEN {self.upper}::BIGINT "
            f"ELSE CAST({scaled} AS BIGINT) END"
        )


@dataclass(frozen=True)
class TablePlan:
    """What to load for one table: raw columns, clamped measures, contribution bound."""

    spec: TableSpec
    source: Source
    raw: list[tuple[ColumnSpec, str]]  # declared column, source column name
    clamped: list[ClampedMeasure]

    @property
    def name(self) -> str:
        """The table's declared (and physical) name."""
        return self.spec.name

    def raw_select(self) -> str:
        """Source columns as the validated type, renamed to their declared names, stored as
        ``column_types.stored_value_sql``."""
        columns = []
        for spec, source in self.raw:
            found = self.source.column(source)
            value = (
                quote(source)
                if found is None
                else column_types.stored_value_sql(
                    found.duckdb_type, f"CAST({quote(source)} AS {found.duckdb_type})"
                )
            )
            columns.append(f"{value} AS {quote(spec.name)}")
        return ", ".join(columns)

    def stored_select(self) -> str:
        """Raw columns plus clamped columns, over a relation with the declared names."""
        raw = [quote(spec.name) for spec, _ in self.raw]
        clamped = [f"{measure.expression()} AS {quote(measure.physical)}" for measure in self.clamped]
        return ", ".join(raw + clamped)

    @property
    def bounds_contributions(self) -> bool:
        """Whether rows are bounded per privacy unit at ingest (a unit and a bound are declared)."""
        return self.spec.privacy_unit is not None and self.spec.max_rows_per_unit is not None


def plan_table(spec: TableSpec, source: Source) -> TablePlan:
    """The load plan of a validated table."""
    raw: list[tuple[ColumnSpec, str]] = []
    clamped: list[ClampedMeasure] = []
    for column in spec.columns:
        if column.role not in LOADED_ROLES:
            continue
        found = source.column(column.name)
        if found is None:
            raise InternalError("a validated column is missing from its source")
        raw.append((column, found.name))
        if column.role is ColumnRole.MEASURE and column.lower is not None and column.upper is not None:
            scale = column_types.measure_scale(found.duckdb_type, column)
            clamped.append(
                ClampedMeasure(
                    column=column.name,
                    physical=f"{column.name}__clamped",
                    scale=scale,
                    lower=column_types.to_fixed_point(column.lower, scale),
                    upper=column_types.to_fixed_point(column.upper, scale),
                    is_float=column_types.is_float(found.duckdb_type),
                )
            )
    return TablePlan(spec, source, raw, clamped)


def build_database(
    database: Path,
    metadata: DatasetMetadata,
    sources: dict[str, Source],
    *,
    temp_dir: Path,
    progress: Progress | None = None,
) -> list[StoredTable]:
    """Create ``database`` with every declared table loaded, checkpointed, and their fingerprints."""
    plans = [plan_table(table, sources[table.name]) for table in metadata.tables]
    rows = sum(count_rows(plan.source) for plan in plans)
    total, done = rows, 0

    def advance(count: int) -> None:
        nonlocal done, total
        done += count
        total = max(total, done)
        if progress is not None:
            progress(done, total)

    bound_first = {plan.name for plan in plans if not _load_then_count(plan)}
    while True:
        try:
            stored = _build(database, plans, bound_first, temp_dir, advance)
            break
        except _OverBound as over:  # rows beyond a bound reached the file: build it again
            scratch = temp_dir / "scratch.duckdb"
            for path in (database, scratch):
                path.unlink(missing_ok=True)
                path.with_name(path.name + ".wal").unlink(missing_ok=True)
            bound_first.add(over.table)
            total += rows
    if progress is not None and total != done:
        progress(done, done)
    return stored


class _OverBound(Exception):
    """A table loaded before counting its units has a unit over its bound."""

    def __init__(self, table: str) -> None:
        super().__init__(table)
        self.table = table


def _load_then_count(plan: TablePlan) -> bool:
    """Whether the table is loaded before its units are counted (one pass over the units instead
    of two): Parquet tables declared to hold one row per unit, which are expected to need no
    bounding. Tables with more rows per unit usually have units over it, so they are bounded as
    they are read; a file built with rows beyond a bound would be built again."""
    return plan.bounds_contributions and not plan.source.is_csv and plan.spec.max_rows_per_unit == 1


def _build(
    database: Path,
    plans: list[TablePlan],
    bound_first: set[str],
    temp_dir: Path,
    advance: Callable[[int], None],
) -> list[StoredTable]:
    stored: list[StoredTable] = []
    with duckdb.connect(str(database)) as con:
        _configure(con, temp_dir)
        for plan in plans:
            counted = _load(con, plan, advance, plan.name in bound_first)
            _check_invariants(con, plan, units=not counted)
            _check_join_keys(con, plan)
            stored.append(_stored_table(con, plan))
        con.execute(f"DETACH {_SCRATCH}")
        con.execute("CHECKPOINT")
    return stored


def quote(identifier: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def _configure(con: duckdb.DuckDBPyConnection, temp_dir: Path) -> None:
    """Spill to ``temp_dir``; attach a scratch database there for the pre-bounding rows."""
    temp_dir.mkdir(mode=0o700, exist_ok=True)
    con.execute(f"SET temp_directory = {_string_literal(temp_dir.as_posix())}")
    con.execute(f"SET memory_limit = '{INGEST_MEMORY_LIMIT}'")
    con.execute("SET preserve_insertion_order = true")  # stored order = source order (fingerprint)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"ATTACH {_string_literal((temp_dir / 'scratch.duckdb').as_posix())} AS {_SCRATCH}")


def _string_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _load(
    con: duckdb.DuckDBPyConnection, plan: TablePlan, advance: Callable[[int], None], bound_first: bool
) -> bool:
    """Load one table; whether its units were counted on the stored table (the bound is checked)."""
    if plan.source.is_csv:
        _load_csv(con, plan, advance)
        counted = False
    else:
        counted = _load_parquet(con, plan, advance, bound_first)
    _check_size(con, plan)
    return counted


def _load_parquet(
    con: duckdb.DuckDBPyConnection, plan: TablePlan, advance: Callable[[int], None], bound_first: bool
) -> bool:
    """DuckDB's Parquet reader in row ranges, progress after each; when some unit exceeds its bound,
    one statement loads and bounds the table, ranking rows by their position in the file.

    Unless ``bound_first``, a bounded table is loaded before its units are counted, on the stored
    table (``_OverBound`` if one has too many rows); returns whether that count was made."""
    path = _string_literal(plan.source.path.as_posix())

    def relation(where: str = "") -> str:
        return (
            f"(SELECT {plan.raw_select()}, file_row_number AS {_ROW_ID} "
            f"FROM read_parquet({path}, file_row_number = true){where})"
        )

    target = quote(plan.name)
    try:
        if plan.bounds_contributions and bound_first and _units_over_bound(con, plan, relation()) > 0:
            _bound_contributions(con, plan, relation())
            advance(count_rows(plan.source))
            return False
        keep = (
            f" WHERE {quote(plan.spec.privacy_unit or '')} IS NOT NULL" if plan.bounds_contributions else ""
        )
        con.execute(f"CREATE TABLE {target} AS SELECT {plan.stored_select()} FROM {relation()} LIMIT 0")
        total = count_rows(plan.source)
        for first, last in row_ranges(plan.source, max(BATCH_ROWS, total // PARQUET_CHUNKS)):
            chunk = relation(f" WHERE file_row_number >= {first} AND file_row_number < {last}")
            con.execute(f"INSERT INTO {target} SELECT {plan.stored_select()} FROM {chunk}{keep}")
            advance(last - first)
    except duckdb.Error:
        raise _unreadable(plan) from None
    if not plan.bounds_contributions or bound_first:
        return False
    if _units_over_bound(con, plan, target, nulls=True) > 0:
        raise _OverBound(plan.name)
    con.execute(f"DROP TABLE {_OVER}")
    return True


def _load_csv(con: duckdb.DuckDBPyConnection, plan: TablePlan, advance: Callable[[int], None]) -> None:
    """Arrow batches with the declared types; bounded tables are staged in the scratch database."""
    target = quote(plan.name)
    source_columns = [source for _, source in plan.raw]
    con.register(_BATCH_VIEW, empty_table(plan.source, source_columns))
    if plan.bounds_contributions:
        staging = f"{_SCRATCH}.{quote(plan.name)}"
        con.execute(f"CREATE TABLE {staging} AS SELECT {plan.raw_select()} FROM {_BATCH_VIEW}")
        insert = f"INSERT INTO {staging} SELECT {plan.raw_select()} FROM {_BATCH_VIEW}"
    else:
        rows = f"(SELECT {plan.raw_select()} FROM {_BATCH_VIEW})"
        con.execute(f"CREATE TABLE {target} AS SELECT {plan.stored_select()} FROM {rows}")
        insert = f"INSERT INTO {target} SELECT {plan.stored_select()} FROM {rows}"
    con.unregister(_BATCH_VIEW)
    for batch in _read(plan, source_columns):
        con.register(_BATCH_VIEW, batch)
        con.execute(insert)
        con.unregister(_BATCH_VIEW)
        advance(batch.num_rows)
    if plan.bounds_contributions:
        relation = f"(SELECT *, rowid AS {_ROW_ID} FROM {staging})"
        _units_over_bound(con, plan, relation)
        _bound_contributions(con, plan, relation)
        con.execute(f"DROP TABLE {staging}")


def _check_size(con: duckdb.DuckDBPyConnection, plan: TablePlan) -> None:
    """A stored table holds at most ``MAX_TABLE_ROWS`` rows (the limit exact sums rely on)."""
    row = con.execute(f"SELECT count(*) FROM {quote(plan.name)}").fetchone()
    if row is not None and row[0] > column_types.MAX_TABLE_ROWS:
        problem = f"table {plan.name!r}: more than 2**40 rows; split it into several datasets"
        raise MetadataInvalid("the source is too large", details={"problems": [problem]})


def _read(plan: TablePlan, source_columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The source's batches; a read error becomes ``MetadataInvalid`` without the data-bearing message."""
    try:
        yield from batches(plan.source, source_columns)
    except pa.ArrowException:
        raise _unreadable(plan) from None


def _unreadable(plan: TablePlan) -> MetadataInvalid:
    reason = (
        "a value does not parse as its column's declared type"
        if plan.source.is_csv
        else "the file is damaged or a value does not convert to its column's type"
    )
    kind = "CSV" if plan.source.is_csv else "Parquet"
    problem = f"table {plan.name!r}: the {kind} source could not be read to the end ({reason})"
    return MetadataInvalid("the source could not be loaded", details={"problems": [problem]})


def _units_over_bound(
    con: duckdb.DuckDBPyConnection, plan: TablePlan, relation: str, *, nulls: bool = False
) -> int:
    """Record the units with more than k rows in a temporary table; how many there are.

    With ``nulls`` (a stored table, which holds no row without a unit), a NULL unit counts as
    over the bound too: that pass is then the complete check of the stored units.
    """
    unit = quote(plan.spec.privacy_unit or "")
    condition = f"count(*) > $1 OR {unit} IS NULL" if nulls else "count(*) > $1"
    where = "" if nulls else f" WHERE {unit} IS NOT NULL"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {_OVER} AS SELECT {unit} AS u FROM {relation}{where} "
        f"GROUP BY ALL HAVING {condition}",
        [plan.spec.max_rows_per_unit],
    )
    row = con.execute(f"SELECT count(*) FROM {_OVER}").fetchone()
    return 0 if row is None else int(row[0])


def _bound_contributions(con: duckdb.DuckDBPyConnection, plan: TablePlan, relation: str) -> None:
    """Keep a uniformly random subset of at most k rows per unit, ranked by a secret salted hash.

    ``relation`` has the declared columns and a unique ``_ROW_ID``. Only the units with more than
    k rows (``_units_over_bound``) are ranked, by a window over their rows alone: the others keep
    all their rows, which is what ranking them would keep too. Rows without a unit are dropped.
    """
    unit = quote(plan.spec.privacy_unit or "")
    stored = plan.stored_select()
    ranked = (
        f"SELECT * FROM {relation} WHERE {unit} IN (SELECT u FROM {_OVER}) QUALIFY row_number() "
        f"OVER (PARTITION BY {unit} ORDER BY hash($1, {_ROW_ID}), {_ROW_ID}) <= $2"
    )
    con.execute(
        f"CREATE TABLE {quote(plan.name)} AS SELECT {stored} FROM {relation} WHERE {unit} IS NOT NULL "
        f"AND {unit} NOT IN (SELECT u FROM {_OVER}) UNION ALL SELECT {stored} FROM ({ranked})",
        [secrets.token_hex(16), plan.spec.max_rows_per_unit],
    )
    con.execute(f"DROP TABLE {_OVER}")


def _check_invariants(con: duckdb.DuckDBPyConnection, plan: TablePlan, *, units: bool) -> None:
    """Re-check what the engine relies on: clamped values in bounds (one scan) and, with ``units``,
    at most k rows per unit and no NULL unit (a table whose stored units were counted on loading
    was checked by that count)."""
    table = quote(plan.name)
    if plan.clamped:
        outside = " OR ".join(
            f"{quote(m.physical)} < {m.lower} OR {quote(m.physical)} > {m.upper}" for m in plan.clamped
        )
        row = con.execute(f"SELECT count(*) FROM {table} WHERE {outside}").fetchone()
        if row is None or row[0] != 0:
            raise InternalError("a clamped measure left its bounds during ingest")
    if units and plan.bounds_contributions:
        unit = quote(plan.spec.privacy_unit or "")
        row = con.execute(
            f"SELECT coalesce(max(n), 0), count(*) FILTER (WHERE u IS NULL) "
            f"FROM (SELECT {unit} AS u, count(*) AS n FROM {table} GROUP BY ALL)"
        ).fetchone()
        if row is None or row[0] > (plan.spec.max_rows_per_unit or 0) or row[1] != 0:
            raise InternalError("contribution bounding failed during ingest")


MAX_PUBLIC_KEYS = 100_000


def _check_join_keys(con: duckdb.DuckDBPyConnection, plan: TablePlan) -> None:
    """Each join key of a public table is unique and never NULL, so a join on it is many-to-one."""
    problems = []
    for key in plan.spec.join_keys or []:
        column = quote(key)
        row = con.execute(
            f"SELECT count(*) - count(DISTINCT {column}), count(*) - count({column}) FROM {quote(plan.name)}"
        ).fetchone()
        if row is None or row[0] != 0 or row[1] != 0:
            problems.append(
                f"table {plan.name!r}: join key {key!r} must be unique and never NULL in a public table "
                "(each row of another table must match at most one row)"
            )
    if problems:
        raise MetadataInvalid("the source does not fit the metadata", details={"problems": problems})


def _public_keys(con: duckdb.DuckDBPyConnection, plan: TablePlan, spec: ColumnSpec) -> list[object] | None:
    """The distinct values of a public table's dimension, in order (the table is public data)."""
    if not plan.spec.public or spec.role is not ColumnRole.DIMENSION:
        return None
    column = quote(spec.name)
    rows = con.execute(
        f"SELECT DISTINCT {column} FROM {quote(plan.name)} WHERE {column} IS NOT NULL ORDER BY 1 "
        f"LIMIT {MAX_PUBLIC_KEYS + 1}"
    ).fetchall()
    if len(rows) > MAX_PUBLIC_KEYS:
        return None
    return [_json_scalar(value) for (value,) in rows]


def _json_scalar(value: object) -> object:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def _stored_table(con: duckdb.DuckDBPyConnection, plan: TablePlan) -> StoredTable:
    types = dict(
        con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {quote(plan.name)})").fetchall()
    )
    clamped = {measure.column: measure for measure in plan.clamped}
    columns = []
    for spec, _ in plan.raw:
        measure = clamped.get(spec.name)
        columns.append(
            StoredColumn(
                name=spec.name,
                duckdb_type=str(types[spec.name]),
                physical=spec.name,
                clamped=measure.physical if measure else None,
                clamped_scale=measure.scale if measure else 0,
                clamped_lower=measure.lower if measure else None,
                clamped_upper=measure.upper if measure else None,
                public_keys=_public_keys(con, plan, spec),
            )
        )
    return StoredTable(
        name=plan.name,
        physical=plan.name,
        columns=columns,
        source_sha256=file_sha256(plan.source.path),
        content_sha256=content_sha256(con, plan.name),
    )
