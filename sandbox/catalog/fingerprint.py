"""Fingerprints: of a source file, of a stored table's content, and of a dataset version.

Content scheme (``content_sha256``, ``sandbox-content-v2``), independent of Arrow buffer layout
and batch boundaries. With ``H`` = SHA-256 and rows in stored order (``rowid``; ingest stores a
source's rows in source order, so the same source gives the same order), each row's line is
DuckDB's ``json_array(c1, …, cn)`` of its columns in table order (timestamps rendered in UTC;
``json_array`` escapes newlines) plus ``\\n``. The rows are cut into blocks of ``BLOCK_ROWS``
consecutive rows (the last one shorter), and

    content_sha256 = H(b"sandbox-content-v2\\n" || header || H(block_0) || H(block_1) || …)

where ``header`` is the UTF-8 JSON list of ``[column_name, duckdb_type]`` pairs plus ``\\n`` and
``H(block_i)`` is the 32-byte digest of the concatenated lines of block ``i``. No sort: DuckDB
renders the lines in a parallel, order-preserving scan and the blocks are hashed on
``HASH_THREADS`` threads (hashlib releases the GIL), so the Python side is not one serial SHA-256
over every byte.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from sandbox.catalog.models import DatasetMetadata, StoredTable

SCHEME = b"sandbox-content-v2\n"
BLOCK_ROWS = 65_536
HASH_THREADS = 2
_IN_FLIGHT = 2 * HASH_THREADS


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def content_sha256(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """SHA-256 of a stored table's rows in the canonical form described in the module docstring."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET arrow_large_buffer_size = false")
    con.execute("SET preserve_insertion_order = true")
    quoted = _quote(table)
    schema = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {quoted})").fetchall()
    digest = hashlib.sha256(SCHEME + json.dumps([list(column) for column in schema]).encode("utf-8") + b"\n")
    columns = ", ".join(_quote(name) for name, _ in schema)
    lines = con.sql(f"SELECT json_array({columns}) || chr(10) FROM {quoted}")
    in_flight: deque[Future[bytes]] = deque()
    with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="fingerprint") as pool:
        block: list[memoryview] = []
        filled = 0
        for batch in lines.to_arrow_reader(BLOCK_ROWS):
            column = batch.column(0)
            start = 0
            while start < len(column):
                take = min(BLOCK_ROWS - filled, len(column) - start)
                block.append(_line_bytes(column, start, take))
                filled, start = filled + take, start + take
                if filled == BLOCK_ROWS:
                    in_flight.append(pool.submit(_block_digest, block))
                    block, filled = [], 0
                    while len(in_flight) > _IN_FLIGHT:
                        digest.update(in_flight.popleft().result())
        if filled:
            in_flight.append(pool.submit(_block_digest, block))
        for future in in_flight:
            digest.update(future.result())
    return digest.hexdigest()


def _line_bytes(column: pa.Array, start: int, length: int) -> memoryview:
    """The bytes of ``length`` consecutive values of a string array, without copying."""
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)
    first = int(offsets[column.offset + start])
    last = int(offsets[column.offset + start + length])
    return memoryview(column.buffers()[2])[first:last]


def _block_digest(parts: Sequence[memoryview]) -> bytes:
    block = hashlib.sha256()
    for part in parts:
        block.update(part)
    return block.digest()


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def dataset_version(metadata: DatasetMetadata, tables: list[StoredTable]) -> str:
    """SHA-256 of the canonical JSON of the metadata and each table's content fingerprint."""
    document = {
        "metadata": metadata.model_dump(mode="json"),
        "content_sha256": {table.name: table.content_sha256 for table in tables},
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
