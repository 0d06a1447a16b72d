"""Synthetic preview rows of a table, generated from its metadata alone: free, and about no one.

``preview(record, table, n, seed)`` draws ``n`` rows in the table's declared shape so an analyst
can write and debug a notebook before spending budget. Every value comes from the metadata and a
seeded generator, never from the stored rows:

- the privacy unit: ``synthetic-1``, ``synthetic-2``, ... (one row per synthetic person);
- a dimension with public ``keys``: uniform over the keys, or the owner's ``preview_weights``;
- a dimension without keys: ``<column>-1`` ... ``<column>-5`` (placeholders, not real values);
  DATE/TIMESTAMP dimensions: dates in 2024;
- a measure with bounds: uniform in ``[lower, upper]`` at the column's precision;
  a measure without bounds: NULL;
- identifiers: not shown (they are never usable).

The rows therefore carry no information about the real data (their distribution is the metadata's),
which is why a preview is not charged. The only inputs are the metadata document, the column types
it declares (or that the source's schema gives) and the request (``n``, ``seed``).
"""

from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta
from typing import Any

from sandbox.catalog.models import ColumnRole, ColumnSpec, DatasetRecord, StoredColumn, TableSpec
from sandbox.errors import InvalidRequest, QueryRejected
from sandbox.query.scalar import kind_of_duckdb_type
from sandbox.query.whitelist import Kind

MAX_PREVIEW_ROWS = 10_000
PLACEHOLDERS = 5
NOTICE = (
    "SYNTHETIC rows generated from the metadata alone (declared keys, bounds and types, uniform "
    "draws): they carry no information about the real data and cost no budget. Use them to write "
    "and test queries; real answers come only from noisy queries."
)


def preview(record: DatasetRecord, table: str | None, n: int, seed: int = 0) -> dict[str, Any]:
    """``n`` synthetic rows of ``table`` (default: the dataset's first table about persons)."""
    if not 1 <= n <= MAX_PREVIEW_ROWS:
        raise InvalidRequest(f"n must be between 1 and {MAX_PREVIEW_ROWS}.", code="request.preview_rows")
    spec = _table(record, table)
    generator = random.Random(_seed(record.metadata.model_dump_json(), spec.name, n, seed))
    columns = [c for c in spec.columns if c.role is not ColumnRole.IDENTIFIER]
    stored = record.stored_table(spec.name)
    values = [_column(c, None if stored is None else stored.column(c.name), n, generator) for c in columns]
    return {
        "dataset": record.name,
        "table": spec.name,
        "synthetic": True,
        "notice": NOTICE,
        "seed": seed,
        "columns": [c.name for c in columns],
        "rows": [list(row) for row in zip(*values, strict=True)] if values else [],
    }


def _table(record: DatasetRecord, name: str | None) -> TableSpec:
    if name is None:
        tables = [t for t in record.metadata.tables if not t.public] or record.metadata.tables
        return tables[0]
    spec = record.metadata.table(name)
    if spec is None:
        known = ", ".join(t.name for t in record.metadata.tables)
        raise QueryRejected(
            "sql.unknown_table", f"Table '{name[:60]}' is not in dataset '{record.name}' ({known})."
        )
    return spec


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def _column(spec: ColumnSpec, stored: StoredColumn | None, n: int, generator: random.Random) -> list[Any]:
    kind = kind_of_duckdb_type(stored.duckdb_type) if stored is not None else Kind.STRING
    if spec.role is ColumnRole.PRIVACY_UNIT:
        return [f"synthetic-{i + 1}" for i in range(n)]
    if spec.role is ColumnRole.MEASURE:
        if spec.lower is None or spec.upper is None:
            return [None] * n
        scale = stored.clamped_scale if stored is not None else 0
        return [_number(generator.uniform(spec.lower, spec.upper), scale) for _ in range(n)]
    keys = spec.keys if spec.keys is not None else (stored.public_keys if stored is not None else None)
    if keys:
        hints = spec.preview_weights
        return generator.choices(keys, weights=hints if hints and len(hints) == len(keys) else None, k=n)
    if kind in (Kind.DATE, Kind.TIMESTAMP):
        start = datetime(2024, 1, 1)
        drawn = [start + timedelta(seconds=generator.randrange(366 * 86400)) for _ in range(n)]
        return [d.date().isoformat() if kind is Kind.DATE else d.isoformat(sep=" ") for d in drawn]
    if kind is Kind.NUMERIC:
        return [generator.randint(1, PLACEHOLDERS) for _ in range(n)]
    if kind is Kind.BOOLEAN:
        return [generator.random() < 0.5 for _ in range(n)]
    return [f"{spec.name}-{generator.randint(1, PLACEHOLDERS)}" for _ in range(n)]


def _number(value: float, scale: int) -> float | int:
    return round(value) if scale == 0 else round(value, scale)
