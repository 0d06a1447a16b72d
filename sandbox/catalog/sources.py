"""Source files (Parquet or CSV): locating them, reading their schema, streaming their rows."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from duckdb.sqltypes import DuckDBPyType

SUFFIXES = (".parquet", ".csv")
BATCH_ROWS = 262_144
CSV_BLOCK_BYTES = 16 << 20  # CSV column types are inferred from the first block of this size
_HASH_CHUNK = 1 << 20


class SourceError(Exception):
    """A source file cannot be used; the message is safe (no data values)."""


@dataclass(frozen=True)
class SourceColumn:
    """One column of a source file, with the DuckDB type it loads as."""

    name: str
    arrow_type: pa.DataType
    duckdb_type: DuckDBPyType


@dataclass(frozen=True)
class Source:
    """A readable source file and its columns, keyed by lower-cased name."""

    path: Path
    schema: pa.Schema
    columns: dict[str, SourceColumn]
    duplicate_names: frozenset[str]

    @property
    def is_csv(self) -> bool:
        """Whether the source is a CSV file (else Parquet)."""
        return self.path.suffix.lower() == ".csv"

    def column(self, name: str) -> SourceColumn | None:
        """The source column of that name (case-insensitive), if exactly one matches."""
        lowered = name.lower()
        return None if lowered in self.duplicate_names else self.columns.get(lowered)


def resolve(base: Path, relative: str) -> Path:
    """The source file ``relative`` inside ``base``; it may not be absolute or leave ``base``."""
    pure = PurePosixPath(relative.replace("\\", "/"))
    if not relative or pure.is_absolute() or ".." in pure.parts:
        raise SourceError("must be a relative path inside the source folder, without '..'")
    if pure.suffix.lower() not in SUFFIXES:
        raise SourceError("must be a .parquet or .csv file")
    path = base.joinpath(*pure.parts)
    if not path.is_file():
        raise SourceError("does not exist or is not a file")
    return path


def open_source(path: Path, con: duckdb.DuckDBPyConnection) -> Source:
    """Read the schema of a Parquet file (footer) or a CSV file (first block) and map it to DuckDB."""
    try:
        schema = _csv_reader(path, None).schema if _is_csv(path) else pads.dataset(path).schema
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(f"cannot be read as {'CSV' if _is_csv(path) else 'Parquet'}") from exc
    try:
        duck_types = _duckdb_types(con, schema)
    except duckdb.Error as exc:
        raise SourceError("has a column type DuckDB cannot load") from exc
    columns: dict[str, SourceColumn] = {}
    duplicates: set[str] = set()
    for field, dtype in zip(schema, duck_types, strict=True):
        key = field.name.lower()
        if key in columns:
            duplicates.add(key)
        columns[key] = SourceColumn(field.name, field.type, dtype)
    return Source(path, schema, columns, frozenset(duplicates))


def with_declared_types(
    source: Source, declared: dict[str, DuckDBPyType], con: duckdb.DuckDBPyConnection
) -> Source:
    """``source`` read with the owner's declared types (keyed by lower-cased source column name).

    A CSV file's types would otherwise be inferred from its values, so one row could change a
    column's published type; with declared types a value that does not parse fails the load.
    """
    fields = []
    columns = dict(source.columns)
    for field in source.schema:
        dtype = declared.get(field.name.lower())
        if dtype is None:
            fields.append(field)
            continue
        arrow_type = con.sql(f"SELECT CAST(NULL AS {dtype}) AS c").arrow().schema.field(0).type
        fields.append(pa.field(field.name, arrow_type))
        columns[field.name.lower()] = SourceColumn(field.name, arrow_type, dtype)
    return Source(source.path, pa.schema(fields), columns, source.duplicate_names)


def count_rows(source: Source) -> int:
    """Rows in the source: exact for Parquet (footer), estimated from line breaks for CSV."""
    if not source.is_csv:
        return int(pads.dataset(source.path).count_rows())
    lines = 0
    with source.path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            lines += chunk.count(b"\n")
    return max(lines - 1, 0)


def batches(source: Source, column_names: list[str]) -> Iterator[pa.RecordBatch]:
    """Stream the named source columns in record batches of at most ``BATCH_ROWS`` rows."""
    if source.is_csv:
        types = {name: source.schema.field(name).type for name in column_names}
        reader = _csv_reader(
            source.path, pacsv.ConvertOptions(include_columns=column_names, column_types=types)
        )
        for batch in reader:
            yield from _split(batch)
    else:
        dataset = pads.dataset(source.path)
        yield from dataset.to_batches(columns=column_names, batch_size=BATCH_ROWS)


def row_ranges(source: Source, rows: int) -> Iterator[tuple[int, int]]:
    """``[first, last)`` row ranges of a Parquet file of about ``rows`` rows each.

    A range ends at a row-group boundary when one lies within half a range past the goal (so
    that no row group is decoded twice), else at the goal itself.
    """
    metadata = pq.ParquetFile(source.path).metadata
    ends = list(itertools.accumulate(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)))
    total = ends[-1] if ends else 0
    first = 0
    while first < total:
        goal = first + rows
        boundary = next((end for end in ends if end >= goal), total)
        last = min(boundary if boundary <= goal + rows // 2 else goal, total)
        yield first, last
        first = last


def empty_table(source: Source, column_names: list[str]) -> pa.Table:
    """A zero-row Arrow table with the named source columns (to create DuckDB tables from)."""
    return source.schema.empty_table().select(column_names)


def _split(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    for start in range(0, batch.num_rows, BATCH_ROWS):
        yield batch.slice(start, BATCH_ROWS)


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def _csv_reader(path: Path, convert: pacsv.ConvertOptions | None) -> pacsv.CSVStreamingReader:
    return pacsv.open_csv(
        path, read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES), convert_options=convert
    )


def _duckdb_types(con: duckdb.DuckDBPyConnection, schema: pa.Schema) -> list[DuckDBPyType]:
    con.register("source_probe", schema.empty_table())
    try:
        return list(con.sql("SELECT * FROM source_probe").types)
    finally:
        con.unregister("source_probe")
