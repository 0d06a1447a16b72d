"""The content fingerprint: the documented scheme recomputed independently, batching independence."""

from __future__ import annotations

import hashlib
import json

import duckdb

from sandbox.catalog.fingerprint import BLOCK_ROWS, content_sha256

ROWS = 2 * BLOCK_ROWS + 1_234  # three blocks, the last one short


def table(order: str) -> duckdb.DuckDBPyConnection:
    """An in-memory table ``t`` of ROWS rows (NULLs, text, timestamps) inserted in the given order."""
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT i % 1000 AS unit, "
        "CASE WHEN i % 7 = 0 THEN NULL ELSE 'k' || (i % 13) END AS \"name\", "
        "TIMESTAMP '2020-01-01' + INTERVAL (i) SECOND AS ts, (i * 37) % 101 - 50.5 AS v "
        f"FROM range({ROWS}) AS r(i) ORDER BY {order}"
    )
    return con


def documented(con: duckdb.DuckDBPyConnection) -> str:
    """docs/catalog.md's scheme, written out without the implementation's streaming and threads."""
    con.execute("SET TimeZone = 'UTC'")
    schema = con.execute("SELECT column_name, column_type FROM (DESCRIBE t)").fetchall()
    rows = con.execute("SELECT json_array(*COLUMNS(*)) FROM t ORDER BY rowid").fetchall()
    lines = [row[0] + "\n" for row in rows]
    blocks = [lines[i : i + BLOCK_ROWS] for i in range(0, len(lines), BLOCK_ROWS)]
    header = json.dumps([list(column) for column in schema]) + "\n"
    digest = hashlib.sha256(b"sandbox-content-v2\n" + header.encode())
    for block in blocks:
        digest.update(hashlib.sha256("".join(block).encode()).digest())
    return digest.hexdigest()


def test_content_fingerprint_follows_the_documented_scheme() -> None:
    con = table("random()")
    assert content_sha256(con, "t") == documented(con)


def test_content_fingerprint_ignores_batching_and_sees_order_and_one_changed_value() -> None:
    """Rows stored in one statement or in uneven batches give one fingerprint; another stored order
    or one changed value gives another."""
    whole = table("hash(ts)")
    rows = whole.sql("SELECT * FROM t ORDER BY rowid").to_arrow_table()
    batched = duckdb.connect()
    batched.execute("CREATE TABLE t AS SELECT * FROM rows LIMIT 0")
    for start in range(0, ROWS, 7_919):
        part = rows.slice(start, 7_919)  # noqa: F841 (read by DuckDB's replacement scan)
        batched.execute("INSERT INTO t SELECT * FROM part")
    assert content_sha256(whole, "t") == content_sha256(batched, "t")
    assert content_sha256(whole, "t") != content_sha256(table("unit, v"), "t")
    batched.execute("UPDATE t SET v = v + 0.5 WHERE ts = (SELECT max(ts) FROM t)")
    assert content_sha256(whole, "t") != content_sha256(batched, "t")


def test_content_fingerprint_of_an_empty_table_is_the_header_alone() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a BIGINT, b VARCHAR)")
    header = b"sandbox-content-v2\n" + json.dumps([["a", "BIGINT"], ["b", "VARCHAR"]]).encode() + b"\n"
    assert content_sha256(con, "t") == hashlib.sha256(header).hexdigest()
