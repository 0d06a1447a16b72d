"""Streaming generation: person chunks in, Parquet row groups of a fixed size out."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sandbox.catalog.models import DatasetMetadata
from sandbox.catalog.synthetic.dimensions import bus_lines_table, districts_table, hospitals_table
from sandbox.catalog.synthetic.metadata import (
    bus_trips_metadata,
    medical_visits_metadata,
    residents_metadata,
    write_metadata,
)
from sandbox.catalog.synthetic.tables import (
    RESIDENTS_SCHEMA,
    TRIPS_SCHEMA,
    VISITS_SCHEMA,
    persons,
    residents_table,
    trips_table,
    visits_table,
)
from sandbox.errors import InvalidRequest

ROW_GROUP_SIZE = 1_000_000
MAX_N = 1_000_000_000  # person_id x 64 stays far below 2^63
COMPRESSION = "zstd"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class GeneratedFiles:
    """What ``generate`` wrote: Parquet files and metadata documents, by name, and row counts."""

    directory: Path
    seed: int
    n: int
    parquet: dict[str, Path]
    metadata: dict[str, Path]
    rows: dict[str, int]

    @property
    def total_rows(self) -> int:
        """Rows over all tables."""
        return sum(self.rows.values())


class _RowGroupWriter:
    """Parquet writer that buffers rows and emits row groups of exactly ``row_group_size`` rows.

    Row groups therefore do not depend on how the rows were chunked on the way in, and each is
    written from contiguous arrays, so the file bytes do not depend on the chunking either.
    """

    def __init__(
        self, path: Path, schema: pa.Schema, row_group_size: int, key_values: dict[str, str]
    ) -> None:
        self._row_group_size = row_group_size
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0
        self._writer = pq.ParquetWriter(
            path, schema.with_metadata(key_values), compression=COMPRESSION, write_statistics=True
        )

    def write(self, table: pa.Table) -> None:
        """Buffer the rows; write every complete row group."""
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.rows += table.num_rows
        if self._pending_rows >= self._row_group_size:
            buffered = pa.concat_tables(self._pending)
            full = (self._pending_rows // self._row_group_size) * self._row_group_size
            for start in range(0, full, self._row_group_size):
                self._write_group(buffered.slice(start, self._row_group_size))
            rest = buffered.slice(full)
            self._pending = [rest] if rest.num_rows else []
            self._pending_rows = rest.num_rows

    def close(self) -> None:
        """Write the buffered rows as a last, shorter row group and close the file."""
        if self._pending_rows:
            self._write_group(pa.concat_tables(self._pending))
        self._pending = []
        self._writer.close()

    def abort(self) -> None:
        """Close the file without writing the buffered rows."""
        self._pending = []
        self._writer.close()

    def _write_group(self, table: pa.Table) -> None:
        self._writer.write_table(table.combine_chunks(), row_group_size=self._row_group_size)


def generate(
    out_dir: Path,
    n: int,
    seed: int = 42,
    *,
    chunk_size: int = 1_000_000,
    progress: Progress | None = None,
    row_group_size: int = ROW_GROUP_SIZE,
) -> GeneratedFiles:
    """Write the synthetic provincial data of ``n`` residents (shared/data/README.md §8) to ``out_dir``.

    Writes ``districts``, ``hospitals``, ``bus_lines``, ``residents``, ``medical_visits`` and
    ``bus_trips`` as zstd Parquet, and the metadata documents ``residents.yaml``,
    ``medical_visits.yaml`` and ``bus_trips.yaml``. Persons are generated ``chunk_size`` at a time, so
    memory grows with ``chunk_size``, not with ``n``; the rows (and file bytes) are the same for any
    ``chunk_size``. ``progress(done, n)`` is called after each chunk.
    """
    if not 1 <= n <= MAX_N:
        raise InvalidRequest(f"n must be between 1 and {MAX_N}", code="generate.invalid_n")
    if chunk_size < 1 or row_group_size < 1:
        raise InvalidRequest("chunk_size and row_group_size must be positive", code="generate.invalid_chunk")
    if not 0 <= seed < 2**64:
        raise InvalidRequest("seed must be an unsigned 64-bit integer", code="generate.invalid_seed")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key_values = {
        "source": f"sandbox synthetic provincial data (shared/data/README.md §8), seed={seed}, n={n}"
    }
    parquet: dict[str, Path] = {}
    rows: dict[str, int] = {}

    for name, table in (
        ("districts", districts_table()),
        ("hospitals", hospitals_table()),
        ("bus_lines", bus_lines_table()),
    ):
        parquet[name] = out_dir / f"{name}.parquet"
        pq.write_table(
            table.replace_schema_metadata(key_values), _temporary(parquet[name]), compression=COMPRESSION
        )
        os.replace(_temporary(parquet[name]), parquet[name])
        rows[name] = table.num_rows

    schemas = {"residents": RESIDENTS_SCHEMA, "medical_visits": VISITS_SCHEMA, "bus_trips": TRIPS_SCHEMA}
    for name in schemas:
        parquet[name] = out_dir / f"{name}.parquet"
    writers = {
        name: _RowGroupWriter(_temporary(parquet[name]), schema, row_group_size, key_values)
        for name, schema in schemas.items()
    }
    try:
        for first in range(1, n + 1, chunk_size):
            stop = min(first + chunk_size, n + 1)
            chunk = persons(seed, first, stop)
            writers["residents"].write(residents_table(chunk))
            writers["medical_visits"].write(visits_table(seed, chunk))
            writers["bus_trips"].write(trips_table(seed, chunk))
            if progress is not None:
                progress(stop - 1, n)
        for writer in writers.values():
            writer.close()
    except BaseException:
        for name, writer in writers.items():
            writer.abort()
            _temporary(parquet[name]).unlink(missing_ok=True)
        raise
    for name, writer in writers.items():
        os.replace(_temporary(parquet[name]), parquet[name])
        rows[name] = writer.rows

    metadata: dict[str, Path] = {}
    documents: dict[str, Callable[[str], DatasetMetadata]] = {
        "residents": residents_metadata,
        "medical_visits": medical_visits_metadata,
        "bus_trips": bus_trips_metadata,
    }
    for name, build in documents.items():
        metadata[name] = out_dir / f"{name}.yaml"
        write_metadata(metadata[name], build(parquet[name].name))
    return GeneratedFiles(out_dir, seed, n, parquet, metadata, rows)


def _temporary(path: Path) -> Path:
    """Where a file is written before it is renamed into place."""
    return path.with_name(f".{path.name}.partial")
