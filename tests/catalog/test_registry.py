"""Registration into real DuckDB files: the shared datasets, storage contract, replace, failures."""

from __future__ import annotations

import decimal
import fcntl
import hashlib
import json
import math
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sandbox.catalog import Catalog, DatasetRecord
from sandbox.catalog.models import StoredTable
from sandbox.catalog.sources import BATCH_ROWS
from sandbox.errors import Conflict, MetadataInvalid, NotFound

REPO = Path(__file__).resolve().parents[2]
SHARED_METADATA = REPO / "deploy" / "datasets" / "shared"
SHARED_NAMES = [
    "adult",
    "beijing_air",
    "diabetes_130",
    "fulton_pums",
    "nycflights13",
    "pums",
    "pums_dup",
    "pums_null",
]


@pytest.fixture(scope="module")
def shared_progress() -> dict[str, list[tuple[int, int]]]:
    """Progress calls per shared dataset, filled by ``shared_catalog``."""
    return {}


@pytest.fixture(scope="module")
def shared_catalog(
    tmp_path_factory: pytest.TempPathFactory,
    shared_data: Path,
    shared_progress: dict[str, list[tuple[int, int]]],
) -> Catalog:
    """Every shared dataset registered once from the repository's extracts of the real data."""
    catalog = Catalog(tmp_path_factory.mktemp("shared") / "home")
    for name in SHARED_NAMES:
        catalog.register(
            SHARED_METADATA / f"{name}.yaml",
            source_root=shared_data,
            progress=_recorder(shared_progress.setdefault(name, [])),
        )
    return catalog


def _recorder(calls: list[tuple[int, int]]) -> Callable[[int, int], None]:
    """A progress callback appending to ``calls``."""

    def record(done: int, total: int) -> None:
        calls.append((done, total))

    return record


def connect(catalog: Catalog, name: str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to a registered dataset's file."""
    return duckdb.connect(str(catalog.database_path(name)), read_only=True)


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The single value of a query."""
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_every_shared_metadata_file_is_registered() -> None:
    assert sorted(path.stem for path in SHARED_METADATA.glob("*.yaml")) == SHARED_NAMES


def test_shared_datasets_listed_with_classifications(shared_catalog: Catalog) -> None:
    records = shared_catalog.list()
    assert [record.name for record in records] == SHARED_NAMES
    classes = {record.name: record.metadata.classification.value for record in records}
    assert classes["diabetes_130"] == "important"
    assert classes["pums_null"] == "core"
    assert {classes[name] for name in SHARED_NAMES if name not in ("diabetes_130", "pums_null")} == {
        "general"
    }


def test_shared_tables_hold_only_loaded_roles(shared_catalog: Catalog) -> None:
    for record in shared_catalog.list():
        with connect(shared_catalog, record.name) as con:
            for table in record.metadata.tables:
                stored = record.stored_table(table.name)
                assert stored is not None
                physical = [row[0] for row in con.execute(f"DESCRIBE {stored.physical}").fetchall()]
                loaded = [c.name for c in table.columns if c.role.value != "identifier"]
                clamped = [c.clamped for c in stored.columns if c.clamped]
                assert physical == loaded + clamped
                assert [c.name for c in stored.columns] == loaded
    with connect(shared_catalog, "diabetes_130") as con:
        names = {row[0] for row in con.execute("DESCRIBE encounters").fetchall()}
    assert "encounter_id" not in names  # identifier
    assert "diag_2" not in names  # undeclared
    with connect(shared_catalog, "adult") as con:
        assert "fnlwgt" not in {row[0] for row in con.execute("DESCRIBE people").fetchall()}


def test_shared_clamped_columns_within_bounds(shared_catalog: Catalog) -> None:
    checked = 0
    for record in shared_catalog.list():
        with connect(shared_catalog, record.name) as con:
            for stored in record.tables:
                for column in stored.columns:
                    if column.clamped is None:
                        continue
                    spec = record.metadata.table(stored.name)
                    assert spec is not None
                    declared = spec.column(column.name)
                    assert declared is not None and declared.lower is not None and declared.upper is not None
                    assert column.clamped_lower == round(declared.lower * 10**column.clamped_scale)
                    assert column.clamped_upper == round(declared.upper * 10**column.clamped_scale)
                    low, high, raw_nulls, clamped_nulls = con.execute(
                        f"SELECT min({column.clamped}), max({column.clamped}), "
                        f"count(*) - count({column.name}), count(*) - count({column.clamped}) "
                        f"FROM {stored.physical}"
                    ).fetchone() or (None, None, None, None)
                    assert column.clamped_lower <= low <= high <= column.clamped_upper
                    assert raw_nulls == clamped_nulls
                    checked += 1
    assert checked == 30


def test_shared_rows_per_unit_bounded(shared_catalog: Catalog, shared_data: Path) -> None:
    """Each stored table holds min(rows, k) rows of every unit (no row without a unit)."""
    checked = 0
    for record in shared_catalog.list():
        for spec, stored in zip(record.metadata.tables, record.tables, strict=True):
            expected = _bounded_rows(shared_data / spec.source, spec.privacy_unit, spec.max_rows_per_unit)
            with connect(shared_catalog, record.name) as con:
                assert scalar(con, f"SELECT count(*) FROM {stored.physical}") == expected, record.name
                if spec.privacy_unit is not None:
                    unit = spec.privacy_unit
                    worst = scalar(
                        con,
                        f"SELECT max(n) FROM (SELECT count(*) AS n FROM {stored.physical} GROUP BY {unit})",
                    )
                    assert worst <= (spec.max_rows_per_unit or 0)
                    assert scalar(con, f"SELECT count(*) FROM {stored.physical} WHERE {unit} IS NULL") == 0
            checked += 1
    assert checked == len(SHARED_NAMES)
    with connect(shared_catalog, "diabetes_130") as con:
        patients = scalar(con, "SELECT count(DISTINCT patient_nbr) FROM encounters")
        assert patients == _distinct(shared_data / "diabetes_130" / "encounters.parquet", "patient_nbr")
        assert scalar(con, "SELECT max(n) FROM (SELECT count(*) n FROM encounters GROUP BY patient_nbr)") == 5
    with connect(shared_catalog, "pums_null") as con:
        assert scalar(con, "SELECT count(*) FROM people") == 1948 - 88  # README: 88 NULL pids dropped


def _bounded_rows(source: Path, unit: str | None, k: int | None) -> int:
    """Rows a table keeps at ingest: all of them without a unit, else min(rows, k) per non-NULL unit."""
    if unit is None:
        query = f"SELECT count(*) FROM read_parquet('{source}')"
    else:
        query = (
            f"SELECT coalesce(sum(least(n, {k})), 0) FROM (SELECT count(*) AS n "
            f"FROM read_parquet('{source}') WHERE {unit} IS NOT NULL GROUP BY {unit})"
        )
    row = duckdb.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def _distinct(source: Path, column: str) -> int:
    row = duckdb.execute(f"SELECT count(DISTINCT {column}) FROM read_parquet('{source}')").fetchone()
    assert row is not None
    return int(row[0])


def test_pums_reference_values(shared_catalog: Catalog) -> None:
    with connect(shared_catalog, "pums") as con:
        count, income, age = con.execute(
            "SELECT count(*), sum(income__clamped), sum(age__clamped) FROM people"
        ).fetchone() or (None, None, None)
    assert (count, income, age) == (1000, 34_380_084, 44_797)


def test_float_measure_fixed_point(shared_catalog: Catalog) -> None:
    stored = shared_catalog.get("beijing_air").stored_table("air_quality")
    assert stored is not None
    temp = stored.column("temp")
    assert temp is not None
    assert (temp.clamped_scale, temp.clamped_lower, temp.clamped_upper) == (4, -200_000, 420_000)
    with connect(shared_catalog, "beijing_air") as con:
        mismatches = scalar(
            con,
            "SELECT count(*) FROM air_quality WHERE temp__clamped IS DISTINCT FROM CAST(round("
            "CASE WHEN temp < -20 THEN -20 WHEN temp > 42 THEN 42 ELSE temp END * 10000) AS BIGINT)",
        )
        assert mismatches == 0
        assert (
            scalar(con, "SELECT count(*) FROM air_quality WHERE pm25 > 1000 AND pm25__clamped <> 10000000")
            == 0
        )


def test_fingerprints_and_record(shared_catalog: Catalog, shared_data: Path) -> None:
    sums: dict[str, str] = {}
    for line in (shared_data / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        sums[name] = digest
    for record in shared_catalog.list():
        for table, stored in zip(record.metadata.tables, record.tables, strict=True):
            assert stored.source_sha256 == sums[table.source]
            assert len(stored.content_sha256) == 64
        on_disk = json.loads((shared_catalog.datasets_dir / record.name / "dataset.json").read_text())
        assert on_disk["database_file"] == "data.duckdb"
        assert DatasetRecord.model_validate(on_disk) == record


def test_fingerprints_stable_for_one_row_per_unit(
    shared_catalog: Catalog, tmp_path: Path, shared_data: Path
) -> None:
    again = Catalog(tmp_path / "home")
    for name in ("pums", "adult", "fulton_pums"):
        first = shared_catalog.get(name)
        second = again.register(SHARED_METADATA / f"{name}.yaml", source_root=shared_data)
        assert [t.content_sha256 for t in second.tables] == [t.content_sha256 for t in first.tables]
        assert second.version == first.version
        assert second.registered_at > first.registered_at


def write_dataset(folder: Path, rows: dict[str, pa.Array], table: dict[str, Any], name: str = "demo") -> Path:
    """A Parquet source and a one-table metadata file in ``folder``; the metadata path."""
    pq.write_table(pa.table(rows), folder / "data.parquet")
    doc = {
        "dataset": name,
        "title": "Demo",
        "owner": "owner-a",
        "classification": "general",
        "tables": [{"name": "t", "source": "data.parquet", **table}],
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_decimal_and_float_measures(tmp_path: Path) -> None:
    rows = {
        "amount": pa.array(
            [decimal.Decimal(v) if v else None for v in ("1.25", "-3.10", "99.99", None)],
            pa.decimal128(10, 2),
        ),
        "ratio": pa.array([0.123456, math.nan, math.inf, -0.06], pa.float64()),
    }
    table = {
        "privacy_unit": None,
        "max_rows_per_unit": 1,
        "columns": [
            {"name": "amount", "role": "measure", "lower": -1.01, "upper": 50},
            {"name": "ratio", "role": "measure", "lower": -0.05, "upper": 0.5, "scale": 3},
        ],
    }
    record = Catalog(tmp_path / "home").register(write_dataset(tmp_path, rows, table))
    amount, ratio = record.tables[0].columns
    assert (amount.duckdb_type, amount.clamped_scale, amount.clamped_lower, amount.clamped_upper) == (
        "DECIMAL(10,2)",
        2,
        -101,
        5000,
    )
    assert (ratio.clamped_scale, ratio.clamped_lower, ratio.clamped_upper) == (3, -50, 500)
    with duckdb.connect(str(Catalog(tmp_path / "home").database_path("demo")), read_only=True) as con:
        values = con.execute("SELECT amount__clamped, ratio__clamped FROM t ORDER BY ALL").fetchall()
    assert sorted(values, key=str) == sorted([(125, 123), (-101, None), (5000, 500), (None, -50)], key=str)


def test_contribution_bounding_is_random_and_exact(tmp_path: Path) -> None:
    csv = tmp_path / "visits.csv"
    lines = ["person,visit,cost"] + [f"1,{i},{i}" for i in range(20)] + ["2,100,5", "2,101,6", ",102,7"]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = {
        "dataset": "visits",
        "title": "Visits",
        "owner": "owner-a",
        "classification": "general",
        "tables": [
            {
                "name": "visits",
                "source": "visits.csv",
                "privacy_unit": "person",
                "max_rows_per_unit": 5,
                "columns": [
                    {"name": "person", "role": "privacy_unit", "type": "BIGINT"},
                    {"name": "visit", "role": "dimension", "type": "BIGINT"},
                    {"name": "cost", "role": "measure", "lower": 0, "upper": 10, "type": "BIGINT"},
                ],
            }
        ],
    }
    path = tmp_path / "visits.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    catalog = Catalog(tmp_path / "home")
    chosen: set[int] = set()
    for _ in range(4):
        catalog.register(path, replace=True)
        with connect(catalog, "visits") as con:
            counts = dict(con.execute("SELECT person, count(*) FROM visits GROUP BY ALL").fetchall())
            assert counts == {1: 5, 2: 2}
            chosen |= {row[0] for row in con.execute("SELECT visit FROM visits WHERE person = 1").fetchall()}
    assert len(chosen) > 5


def test_csv_source_with_progress(tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("id,city,income\n1,a,10.5\n2,b,\n3,,99999\n", encoding="utf-8")
    doc = {
        "dataset": "people_csv",
        "title": "People",
        "owner": "owner-a",
        "classification": "important",
        "tables": [
            {
                "name": "people",
                "source": "people.csv",
                "privacy_unit": "id",
                "max_rows_per_unit": 1,
                "columns": [
                    {"name": "id", "role": "privacy_unit", "type": "BIGINT"},
                    {"name": "city", "role": "dimension", "keys": ["a", "b", None], "type": "VARCHAR"},
                    {"name": "income", "role": "measure", "lower": 0, "upper": 100, "type": "DOUBLE"},
                ],
            }
        ],
    }
    path = tmp_path / "people.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    calls: list[tuple[int, int]] = []
    catalog = Catalog(tmp_path / "home")
    record = catalog.register(path, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (3, 3)
    assert [c.duckdb_type for c in record.tables[0].columns] == ["BIGINT", "VARCHAR", "DOUBLE"]
    assert record.tables[0].source_sha256 == hashlib.sha256(csv.read_bytes()).hexdigest()
    with connect(catalog, "people_csv") as con:
        assert con.execute("SELECT id, income__clamped FROM people ORDER BY id").fetchall() == [
            (1, 105_000),
            (2, None),
            (3, 1_000_000),
        ]


def test_progress_reports_every_batch(
    shared_catalog: Catalog, shared_progress: dict[str, list[tuple[int, int]]], shared_data: Path
) -> None:
    rows = _bounded_rows(shared_data / "beijing_air" / "beijing_air_quality.parquet", None, None)
    calls = shared_progress["beijing_air"]
    # Parquet loads in row ranges of at least BATCH_ROWS: the 2,112-row extract is one range
    assert len(calls) >= (2 if rows > BATCH_ROWS else 1)
    assert calls[-1] == (rows, rows)
    assert all(total == rows for _, total in calls)
    assert [done for done, _ in calls] == sorted({done for done, _ in calls})
    assert shared_progress["pums"] == [(1000, 1000)]


def leftovers(catalog: Catalog) -> list[str]:
    """Staging or old folders left in the datasets folder."""
    if not catalog.datasets_dir.exists():
        return []
    return sorted(p.name for p in catalog.datasets_dir.iterdir() if p.name.startswith((".staging-", ".old-")))


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Catalog, Path]]:
    """A catalog and a small valid metadata file."""
    rows = {"pid": pa.array([1, 2, 2], pa.int64()), "x": pa.array([1.0, 2.0, 3.0])}
    table = {
        "privacy_unit": "pid",
        "max_rows_per_unit": 2,
        "columns": [
            {"name": "pid", "role": "privacy_unit"},
            {"name": "x", "role": "measure", "lower": 0, "upper": 5},
        ],
    }
    yield Catalog(tmp_path / "home"), write_dataset(tmp_path, rows, table)


def test_replace_semantics(small: tuple[Catalog, Path]) -> None:
    catalog, path = small
    first = catalog.register(path)
    with pytest.raises(Conflict) as caught:
        catalog.register(path)
    assert caught.value.code == "catalog.dataset_exists"
    assert catalog.get("demo") == first
    second = catalog.register(path, replace=True)
    assert catalog.get("demo") == second
    assert second.registered_at > first.registered_at
    assert second.version == first.version
    assert leftovers(catalog) == []
    assert [r.name for r in catalog.list()] == ["demo"]


def test_nothing_half_registered_when_ingest_fails(small: tuple[Catalog, Path]) -> None:
    catalog, path = small

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        catalog.register(path, progress=interrupt)
    assert not (catalog.datasets_dir / "demo").exists()
    assert leftovers(catalog) == []
    assert catalog.list() == []
    first = catalog.register(path)
    with pytest.raises(KeyboardInterrupt):
        catalog.register(path, replace=True, progress=interrupt)
    assert catalog.get("demo") == first
    assert leftovers(catalog) == []


def test_csv_value_not_of_the_declared_type_fails_cleanly(tmp_path: Path) -> None:
    """Types come from the metadata: a value that does not parse fails the load, past the first
    block too (the type is never inferred from values)."""
    padding = "p" * 200
    lines = ["id,amount,note"] + [f"{i},{i % 7},{padding}" for i in range(90_000)] + ["90000,not-a-number,x"]
    (tmp_path / "big.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert (tmp_path / "big.csv").stat().st_size > 16 << 20
    doc = {
        "dataset": "big",
        "title": "Big",
        "owner": "owner-a",
        "classification": "general",
        "tables": [
            {
                "name": "big",
                "source": "big.csv",
                "privacy_unit": "id",
                "max_rows_per_unit": 1,
                "columns": [
                    {"name": "id", "role": "privacy_unit", "type": "BIGINT"},
                    {"name": "amount", "role": "measure", "lower": 0, "upper": 10, "type": "BIGINT"},
                ],
            }
        ],
    }
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    catalog = Catalog(tmp_path / "home")
    assert catalog.validate(path) == []
    with pytest.raises(MetadataInvalid) as caught:
        catalog.register(path)
    (problem,) = caught.value.details["problems"]
    assert problem.startswith("table 'big': the CSV source could not be read to the end")
    assert "not-a-number" not in problem
    assert not (catalog.datasets_dir / "big").exists()
    assert leftovers(catalog) == []


def test_leftovers_of_a_crash_are_removed(small: tuple[Catalog, Path]) -> None:
    catalog, path = small
    catalog.datasets_dir.mkdir(parents=True)
    for name in (".staging-dead", ".old-dead", ".staging-live"):
        (catalog.datasets_dir / name).mkdir()
        (catalog.datasets_dir / name / "data.duckdb").write_bytes(b"partial")
    with (catalog.datasets_dir / ".staging-live.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        catalog.register(path)
        assert leftovers(catalog) == [".staging-live", ".staging-live.lock"]
    catalog.register(path, replace=True)
    assert leftovers(catalog) == []


def test_lookup_errors(small: tuple[Catalog, Path]) -> None:
    catalog, path = small
    assert catalog.list() == []
    for name in ("demo", "../etc", "Demo"):
        with pytest.raises(NotFound) as caught:
            catalog.get(name)
        assert caught.value.code == "catalog.dataset_not_found"
    with pytest.raises(NotFound):
        catalog.database_path("demo")
    catalog.register(path)
    assert catalog.database_path("demo") == catalog.datasets_dir / "demo" / "data.duckdb"


def test_permissions(small: tuple[Catalog, Path]) -> None:
    catalog, path = small
    catalog.register(path)
    folder = catalog.datasets_dir / "demo"
    assert sorted(p.name for p in folder.iterdir()) == ["data.duckdb", "dataset.json"]
    for item, mode in ((catalog.datasets_dir, 0o700), (folder, 0o700)):
        assert stat.S_IMODE(item.stat().st_mode) == mode
    for item in folder.iterdir():
        assert stat.S_IMODE(item.stat().st_mode) == 0o600


def test_stored_table_model_matches_file(small: tuple[Catalog, Path]) -> None:
    catalog, path = small
    stored: StoredTable = catalog.register(path).tables[0]
    assert stored.physical == "t"
    x = stored.column("X")
    assert x is not None and (x.physical, x.clamped, x.clamped_scale) == ("x", "x__clamped", 4)
    with connect(catalog, "demo") as con:
        assert con.execute("SELECT pid, x, x__clamped FROM t ORDER BY ALL").fetchall() == [
            (1, 1.0, 10_000),
            (2, 2.0, 20_000),
            (2, 3.0, 30_000),
        ]


@pytest.mark.parametrize("k", [1, 2])
def test_parquet_rows_are_stored_in_source_order(tmp_path: Path, k: int) -> None:
    """Rows read in several Parquet row ranges keep the source's order (the content fingerprint is
    over stored order) when no unit exceeds its bound; with k = 2 some do and keep k rows each."""
    n = 700_000
    units = [i // 3 if k == 2 and i < 999 else i for i in range(n)]  # 333 units of 3 rows
    path = tmp_path / "data.parquet"
    table = {
        "privacy_unit": "uid",
        "max_rows_per_unit": k,
        "columns": [
            {"name": "uid", "role": "privacy_unit"},
            {"name": "v", "role": "measure", "lower": 0, "upper": 9},
        ],
    }
    metadata = write_dataset(
        tmp_path, {"uid": pa.array(units, pa.int64()), "v": pa.array([i % 10 for i in range(n)])}, table
    )
    pq.write_table(pq.read_table(path), path, row_group_size=100_000)
    calls: list[tuple[int, int]] = []
    catalog = Catalog(tmp_path / "home")
    catalog.register(metadata, progress=lambda done, total: calls.append((done, total)))
    with connect(catalog, "demo") as con:
        stored = [row[0] for row in con.execute("SELECT uid FROM t").fetchall()]
    if k == 1:
        assert stored == units
        assert len(calls) >= 2 and calls[-1] == (n, n)
    else:
        assert sorted(stored) == sorted(units[999:] + list(range(333)) * 2)  # two rows of each unit over k


def test_one_row_per_unit_table_with_a_repeated_unit_is_built_again(tmp_path: Path) -> None:
    """A Parquet table declared with one row per unit is loaded before its units are counted; when
    a unit repeats (or is NULL), rows beyond the bound have reached the file, so the file is built
    again with bounding: one row per unit, no NULL unit, and progress that never goes back."""
    units = [5, 1, 2, 1, None, 3, 1]
    table = {
        "privacy_unit": "uid",
        "max_rows_per_unit": 1,
        "columns": [
            {"name": "uid", "role": "privacy_unit"},
            {"name": "v", "role": "measure", "lower": 0, "upper": 9},
        ],
    }
    metadata = write_dataset(
        tmp_path, {"uid": pa.array(units, pa.int64()), "v": pa.array(range(len(units)), pa.int64())}, table
    )
    calls: list[tuple[int, int]] = []
    catalog = Catalog(tmp_path / "home")
    catalog.register(metadata, progress=lambda done, total: calls.append((done, total)))
    with connect(catalog, "demo") as con:
        rows = con.execute("SELECT uid, v FROM t").fetchall()
    assert sorted(uid for uid, _ in rows) == [1, 2, 3, 5]
    assert {v for uid, v in rows if uid == 1} <= {1, 3, 6}
    assert calls == sorted(calls) and calls[-1][0] == calls[-1][1]
