"""The second line of defence: analyst connections are read-only, offline, locked, time-limited,
and their errors carry no data.

These tests send raw SQL straight to ``LockedDatabase`` (the whitelist would reject it first) to
show what DuckDB itself refuses once the lockdown settings are on.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from query_support import DatasetMaker

from sandbox.catalog import Catalog, DatasetRecord
from sandbox.errors import QueryFailed
from sandbox.query import Engine
from sandbox.query.execute import LockedDatabase
from sandbox.settings import Settings

SECRET_NAMES = ["Alice Zhang", "Bob Li", "Carol Wang"]


@pytest.fixture(scope="module")
def people(make_dataset: DatasetMaker) -> DatasetRecord:
    """Three persons whose names (a dimension) must never appear in an error."""
    table = pa.table({"uid": [1, 2, 3], "name": SECRET_NAMES, "age": [31, 47, 58]})
    columns = [
        {"name": "uid", "role": "privacy_unit"},
        {"name": "name", "role": "dimension"},
        {"name": "age", "role": "measure", "lower": 0, "upper": 100},
    ]
    return make_dataset("lockdown_people", table, columns)


@pytest.fixture(scope="module")
def locked(catalog: Catalog, people: DatasetRecord) -> LockedDatabase:
    settings = Settings()
    return LockedDatabase(
        catalog.database_path(people.name),
        memory_limit=settings.duckdb_memory_limit,
        threads=settings.duckdb_threads,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def failure(database: LockedDatabase, sql: str) -> QueryFailed:
    with pytest.raises(QueryFailed) as caught:
        database.run(sql, 10.0)
    return caught.value


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO t VALUES (4, 'Dan', 20, 20)",
        "UPDATE t SET age = 0",
        "DELETE FROM t",
        "DROP TABLE t",
        "ALTER TABLE t ADD COLUMN z INTEGER",
        "CREATE VIEW v AS SELECT 1",
        "CREATE SEQUENCE s",
    ],
)
def test_connection_is_read_only(
    locked: LockedDatabase, catalog: Catalog, people: DatasetRecord, sql: str
) -> None:
    """No statement can change the dataset file."""
    path = catalog.database_path(people.name)
    before = digest(path)
    error = failure(locked, sql)
    assert error.code == "query.execution_failed"
    assert digest(path) == before
    assert locked.run("SELECT count(*) FROM t", 10.0) == [(3,)]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "ATTACH '{tmp}/other.duckdb' AS other",
        "COPY (SELECT * FROM t) TO '{tmp}/leak.csv'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    ],
)
def test_external_access_is_off(locked: LockedDatabase, tmp_path: Path, sql: str) -> None:
    """No file outside the dataset, no network, no extension can be reached."""
    error = failure(locked, sql.format(tmp=tmp_path))
    assert error.code == "query.execution_failed"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "sql",
    [
        "SET enable_external_access = true",
        "SET memory_limit = '64GB'",
        "SET threads = 64",
        "SET lock_configuration = false",
        "SET autoload_known_extensions = true",
        "RESET memory_limit",
    ],
)
def test_configuration_is_locked(locked: LockedDatabase, sql: str) -> None:
    """Settings cannot be changed once the connection is open."""
    assert failure(locked, sql).code == "query.execution_failed"


def test_settings_in_force(locked: LockedDatabase) -> None:
    """The lockdown settings are the ones in force on the analyst connection."""
    settings = Settings()
    names = [
        "access_mode",
        "enable_external_access",
        "autoinstall_known_extensions",
        "autoload_known_extensions",
        "allow_community_extensions",
        "lock_configuration",
        "threads",
    ]
    sql = "SELECT " + ", ".join(f"current_setting('{n}')" for n in names)
    ((mode, external, install, load, community, lock, threads),) = locked.run(sql, 10.0)
    assert str(mode).lower() == "read_only"
    assert (external, install, load, community, lock) == (False, False, False, False, True)
    assert int(threads) == settings.duckdb_threads
    ((memory,),) = locked.run("SELECT current_setting('memory_limit')", 10.0)
    assert str(memory).replace(" ", "").upper().startswith(("1.8GIB", "1.9GIB", "2.0GB", "2GB", "1.8GB"))


def test_execution_errors_carry_no_data(locked: LockedDatabase, caplog: pytest.LogCaptureFixture) -> None:
    """DuckDB's own message would echo the value ("Could not convert string 'Alice Zhang'..."); ours
    never does, nor does the log line, nor the exception chain shown to callers."""
    sql = "SELECT CAST(name AS INTEGER) FROM t"
    with duckdb.connect() as plain:
        plain.execute("CREATE TABLE t AS SELECT 'Alice Zhang' AS name")
        with pytest.raises(duckdb.Error) as raw:
            plain.execute(sql)
    assert "Alice" in str(raw.value)  # the danger this guards against
    with caplog.at_level(logging.DEBUG):
        error = failure(locked, sql)
    texts = [str(error), str(error.to_body()), *(r.getMessage() for r in caplog.records)]
    for text in texts:
        for name in SECRET_NAMES:
            assert name.split()[0] not in text
    assert error.__cause__ is None
    assert error.__suppress_context__
    assert error.http_status == 503


@pytest.fixture(scope="module")
def generated(make_dataset: DatasetMaker, tmp_path_factory: pytest.TempPathFactory) -> DatasetRecord:
    """300,000 rows, one distinct key each: a GROUP BY heavy enough to outlast a tiny time limit."""
    rows = 300_000
    table = pa.table(
        {
            "uid": pa.array(range(rows), pa.int64()),
            "g": pa.array([f"key-{i}" for i in range(rows)]),
            "v": pa.array([float(i % 997) for i in range(rows)]),
        }
    )
    columns = [
        {"name": "uid", "role": "privacy_unit"},
        {"name": "g", "role": "dimension"},
        {"name": "v", "role": "measure", "lower": 0, "upper": 1000},
    ]
    return make_dataset("generated", table, columns)


def test_time_limit_interrupts_engine_query(catalog: Catalog, generated: DatasetRecord) -> None:
    """A query past query_timeout_s is interrupted and reported as query.timeout; the engine (and
    its connection) keeps working afterwards."""
    engine = Engine(catalog, Settings(query_timeout_s=0.002))
    sql = "SELECT g, COUNT(*), AVG(v) FROM t WHERE contains(lower(g), '7') GROUP BY g"
    started = time.monotonic()
    with pytest.raises(QueryFailed) as caught:
        engine.query(generated.name, sql, 1.0, 1e-6)
    assert caught.value.code == "query.timeout"
    assert "0.002" in caught.value.message
    assert time.monotonic() - started < 10
    patient = Engine(catalog, Settings(query_timeout_s=60, max_epsilon_per_query=1e9))
    assert patient.query(generated.name, "SELECT COUNT(*) FROM t", 1e6).rows == [[300_000]]
    engine.close()
    patient.close()


def test_time_limit_stops_a_runaway_statement(locked: LockedDatabase) -> None:
    """The watchdog interrupts even a statement that would run for hours, within the limit's order."""
    started = time.monotonic()
    with pytest.raises(QueryFailed) as caught:
        locked.run("SELECT sum(i * i) FROM range(10000000000000) AS r(i)", 0.2)
    assert caught.value.code == "query.timeout"
    assert time.monotonic() - started < 5
    assert locked.run("SELECT count(*) FROM t", 10.0) == [(3,)]
