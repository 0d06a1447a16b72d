"""Fingerprints: of a source file, of a stored table's content, and of a dataset version.

Content scheme (``content_sha256``), independent of Arrow buffer layout and batch boundaries:
SHA-256 over the UTF-8 bytes of

1. the JSON list of ``[column_name, duckdb_type]`` pairs of the stored table, then a newline;
2. for every stored row, in ascending ``ORDER BY ALL`` order (NULLS LAST), DuckDB's
   ``to_json(row)`` (an object keyed by column name, in table column order; timestamps rendered
   in UTC) followed by a newline (``to_json`` escapes newlines, so the framing is unambiguous).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import numpy as np

from sandbox.catalog.models import DatasetMetadata, StoredTable

CONTENT_BATCH_ROWS = 65_536


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def content_sha256(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """SHA-256 of a stored table's rows in the canonical form described in the module docstring."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET arrow_large_buffer_size = false")
    quoted = '"' + table.replace('"', '""') + '"'
    schema = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {quoted})").fetchall()
    digest = hashlib.sha256(json.dumps([list(column) for column in schema]).encode("utf-8") + b"\n")
    rows = con.sql(f"SELECT to_json(t) || chr(10) FROM (SELECT * FROM {quoted} ORDER BY ALL) AS t")
    for batch in rows.to_arrow_reader(CONTENT_BATCH_ROWS):
        lines = batch.column(0)
        if len(lines) == 0:
            continue
        offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)
        first, last = int(offsets[lines.offset]), int(offsets[lines.offset + len(lines)])
        digest.update(memoryview(lines.buffers()[2])[first:last])
    return digest.hexdigest()


def dataset_version(metadata: DatasetMetadata, tables: list[StoredTable]) -> str:
    """SHA-256 of the canonical JSON of the metadata and each table's content fingerprint."""
    document = {
        "metadata": metadata.model_dump(mode="json"),
        "content_sha256": {table.name: table.content_sha256 for table in tables},
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
