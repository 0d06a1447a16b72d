"""Streaming generation: person chunks in, Parquet row groups of a fixed size out."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from sandbox.catalog.models import DatasetMetadata
from sandbox.catalog.synthetic.dimensions import bus_lines_table, districts_table, hospitals_table
from sandbox.catalog.synthetic.metadata import (
    bus_trips_metadata,
    medical_visits_metadata,
    province_metadata,
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
CHUNK_SIZE = 100_000  # residents per step: ~1.2 M rows in memory; larger chunks are slower (page faults)
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
    chunk_size: int = CHUNK_SIZE,
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
        _write_person_tables(seed, n, chunk_size, writers, progress)
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
    metadata["province"] = out_dir / "province.yaml"
    write_metadata(metadata["province"], province_metadata({k: v.name for k, v in parquet.items()}))
    return GeneratedFiles(out_dir, seed, n, parquet, metadata, rows)


def _write_person_tables(
    seed: int, n: int, chunk_size: int, writers: dict[str, _RowGroupWriter], progress: Progress | None
) -> None:
    """Generate each person chunk on this thread while one worker thread encodes the previous one.

    Parquet encoding releases the GIL, so generation and compression overlap on two cores; a single
    worker keeps the row order, and at most two chunks are held at once.
    """

    def write(tables: dict[str, pa.Table]) -> None:
        for name, table in tables.items():
            writers[name].write(table)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="synthetic-writer") as pool:
        previous: tuple[Future[None], int] | None = None
        for first in range(1, n + 1, chunk_size):
            stop = min(first + chunk_size, n + 1)
            chunk = persons(seed, first, stop)
            tables = {
                "residents": residents_table(chunk),
                "medical_visits": visits_table(seed, chunk),
                "bus_trips": trips_table(seed, chunk),
            }
            del chunk
            if previous is not None:
                _finish(previous, n, progress)
            previous = (pool.submit(write, tables), stop - 1)
            del tables
        if previous is not None:
            _finish(previous, n, progress)


def _finish(written: tuple[Future[None], int], n: int, progress: Progress | None) -> None:
    """Wait for a chunk's write and report it."""
    future, done = written
    future.result()
    if progress is not None:
        progress(done, n)


def _temporary(path: Path) -> Path:
    """Where a file is written before it is renamed into place."""
    return path.with_name(f".{path.name}.partial")
