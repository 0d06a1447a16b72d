"""The synthetic provincial data generator (shared/data/README.md §8): randomness, rows, files, metadata."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from sandbox.catalog import Catalog, DatasetMetadata
from sandbox.catalog.synthetic import GeneratedFiles, generate
from sandbox.catalog.synthetic.rng import (
    categorical,
    categorical_cdf,
    poisson_by_class,
    poisson_cdf,
    splitmix64,
    stream_id,
    uniform,
    uniform_scalar,
)
from sandbox.catalog.synthetic.tables import persons
from sandbox.errors import InvalidRequest

N = 100_000
PERSON_TABLES = ("residents", "medical_visits", "bus_trips")
ALL_TABLES = ("districts", "hospitals", "bus_lines", *PERSON_TABLES)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> GeneratedFiles:
    return generate(tmp_path_factory.mktemp("synthetic"), N, 42)


@pytest.fixture(scope="module")
def con(generated: GeneratedFiles) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    for name, path in generated.parquet.items():
        connection.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{path}')")
    yield connection
    connection.close()


def one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row


def file_digests(files: GeneratedFiles) -> dict[str, str]:
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in files.parquet.items()}


# ---- §8.2 deterministic randomness -------------------------------------------------------------


def test_spec_test_vectors() -> None:
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    assert stream_id("residents.age") == 0xF52903D8028AE213
    assert f"{uniform_scalar(42, 'residents.age', 1):.15g}" == "0.875714790746587"
    vectorised = uniform(42, "residents.age", np.array([1], dtype=np.uint64))
    assert vectorised[0] == uniform_scalar(42, "residents.age", 1)


def test_vectorised_uniform_equals_the_scalar_definition() -> None:
    keys = [0, 1, 2, 15, 16, 2**32 + 7, 6_400_000_063, 2**63 + 5, 2**64 - 1]
    keys += list(range(100_000, 170_000, 997))  # crosses the 32768-key block boundaries
    dense = np.arange(200_000, dtype=np.uint64)
    for seed in (0, 42, 2**64 - 1):
        got = uniform(seed, "trips.line", np.array(keys, dtype=np.uint64))
        assert got.tolist() == [uniform_scalar(seed, "trips.line", k) for k in keys]
        whole = uniform(seed, "visits.type", dense)
        assert whole[70_001] == uniform_scalar(seed, "visits.type", 70_001)
        assert np.array_equal(whole[65_530:65_540], uniform(seed, "visits.type", dense[65_530:65_540]))
    assert ((whole >= 0) & (whole < 1)).all()


def test_categorical_counts_cdf_entries_at_or_below_u() -> None:
    cdf = categorical_cdf([0.0, 1.0, 1.0, 2.0])
    assert cdf.tolist() == [0.0, 0.25, 0.5, 1.0]
    u = np.array([0.0, 0.2499, 0.25, 0.4999, 0.5, 0.9999999])
    assert categorical(cdf, u).tolist() == [1, 1, 2, 2, 3, 3]  # a zero weight is never drawn


def test_poisson_is_the_capped_inverse_cdf() -> None:
    cdf = poisson_cdf(1.8, 16)
    assert cdf[0] == pytest.approx(np.exp(-1.8))
    assert cdf[2] == pytest.approx(np.exp(-1.8) * (1 + 1.8 + 1.8**2 / 2))
    u = np.array([0.0, cdf[0] - 1e-12, cdf[0], cdf[3], 1 - 1e-16])
    got = poisson_by_class([1.8], np.zeros(len(u), dtype=np.intp), u, 16)
    assert got.tolist() == [0, 0, 1, 4, 16]  # smallest k with u < F(k), capped at 16


# ---- chunk independence and reproducibility ------------------------------------------------------


def test_any_person_range_matches_the_whole(tmp_path: Path) -> None:
    whole = persons(7, 1, 5001)
    part = persons(7, 1234, 3000)
    assert np.array_equal(part.age, whole.age[1233:2999])
    assert np.array_equal(part.income, whole.income[1233:2999])
    assert np.array_equal(part.insurance, whole.insurance[1233:2999])


def test_chunk_size_does_not_change_the_files(tmp_path: Path) -> None:
    small = generate(tmp_path / "a", 20_000, 42, chunk_size=1_000)
    large = generate(tmp_path / "b", 20_000, 42, chunk_size=100_000)
    for name in ALL_TABLES:
        assert pq.read_table(small.parquet[name]).equals(pq.read_table(large.parquet[name])), name
    assert file_digests(small) == file_digests(large)
    assert small.rows == large.rows


def test_row_groups_have_a_fixed_size_whatever_the_chunking(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", 3_000, 9, chunk_size=700, row_group_size=1_000)
    b = generate(tmp_path / "b", 3_000, 9, chunk_size=3_000, row_group_size=1_000)
    assert file_digests(a) == file_digests(b)
    trips = pq.ParquetFile(a.parquet["bus_trips"])
    sizes = [trips.metadata.row_group(i).num_rows for i in range(trips.num_row_groups)]
    assert sizes[:-1] == [1_000] * (len(sizes) - 1)
    assert 0 < sizes[-1] <= 1_000
    assert sum(sizes) == a.rows["bus_trips"]


def test_seed_changes_the_data(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", 2_000, 1)
    b = generate(tmp_path / "b", 2_000, 2)
    assert not pq.read_table(a.parquet["residents"]).equals(pq.read_table(b.parquet["residents"]))
    assert pq.read_table(a.parquet["districts"]).equals(pq.read_table(b.parquet["districts"]))


def test_exact_row_counts_are_pinned(generated: GeneratedFiles) -> None:
    # Regression guard: these depend only on integer hashing and the Poisson tables.
    assert generated.rows == {
        "districts": 12,
        "hospitals": 48,
        "bus_lines": 120,
        "residents": 100_000,
        "medical_visits": 190_730,
        "bus_trips": 937_309,
    }
    assert generated.total_rows == sum(generated.rows.values())


# ---- schemas ---------------------------------------------------------------------------------------


def test_column_names_and_types(con: duckdb.DuckDBPyConnection) -> None:
    def types(table: str) -> list[tuple[str, str]]:
        return [(name, kind) for name, kind, *_ in con.execute(f"DESCRIBE {table}").fetchall()]

    assert types("residents") == [
        ("person_id", "BIGINT"),
        ("district_code", "VARCHAR"),
        ("sex", "VARCHAR"),
        ("age", "INTEGER"),
        ("hukou", "VARCHAR"),
        ("income", "BIGINT"),
        ("insurance", "VARCHAR"),
    ]
    assert types("medical_visits") == [
        ("visit_id", "BIGINT"),
        ("person_id", "BIGINT"),
        ("visit_date", "DATE"),
        ("visit_type", "VARCHAR"),
        ("hospital_id", "INTEGER"),
        ("department", "VARCHAR"),
        ("cost", "DECIMAL(12,2)"),
        ("reimbursed", "DECIMAL(12,2)"),
        ("los_days", "INTEGER"),
    ]
    assert types("bus_trips") == [
        ("trip_id", "BIGINT"),
        ("card_id", "BIGINT"),
        ("card_type", "VARCHAR"),
        ("trip_date", "DATE"),
        ("tap_time", "TIMESTAMP"),
        ("line_id", "INTEGER"),
        ("stop_id", "INTEGER"),
        ("fare", "DECIMAL(5,2)"),
    ]


def test_fixed_dimensions(con: duckdb.DuckDBPyConnection) -> None:
    assert con.execute("SELECT district_code, name, type FROM districts LIMIT 1").fetchall() == [
        ("990101", "中心区", "urban")
    ]
    assert one(con, "SELECT sum(pop_weight), count(*) FILTER (type = 'county') FROM districts") == (
        pytest.approx(1.0),
        4,
    )
    levels = dict(con.execute("SELECT level, count(*) FROM hospitals GROUP BY level").fetchall())
    assert levels == {"tertiary": 8, "secondary": 16, "primary": 24}
    assert con.execute("SELECT * FROM hospitals WHERE hospital_id IN (33, 34, 48) ORDER BY 1").fetchall() == [
        (33, "990121", "secondary", "H033"),
        (34, "990121", "secondary", "H034"),
        (48, "990124", "primary", "H048"),
    ]
    assert one(con, "SELECT min(n_stops), max(n_stops), count(*) FROM bus_lines") == (18, 40, 120)
    assert con.execute("SELECT * FROM bus_lines WHERE line_id IN (1, 9) ORDER BY 1").fetchall() == [
        (1, "1路", "990101", 25, "flat"),
        (9, "9路", "990121", 18 + 63 % 23, "distance"),
    ]


# ---- residents (§8.1, §8.4) -------------------------------------------------------------------------


def test_residents_statistics(con: duckdb.DuckDBPyConnection) -> None:
    mean_age, old, zero_income, mean_income, p99 = one(
        con,
        "SELECT avg(age), avg((age >= 60)::INT), avg((income = 0)::INT), avg(income), "
        "quantile_cont(income, 0.99) FROM residents",
    )
    assert 38.5 < mean_age < 39.3  # spec: 38.9
    assert 0.180 < old < 0.194  # spec: 18.7%
    assert 0.29 < zero_income < 0.32  # spec: 31%
    assert 51_000 < mean_income < 56_500  # spec: 53.8k
    assert 280_000 < p99 < 320_000  # spec: 298k
    assert one(con, "SELECT min(person_id), max(person_id), count(DISTINCT person_id) FROM residents") == (
        1,
        N,
        N,
    )
    assert one(con, "SELECT min(age), max(age), max(income) FROM residents")[:2] == (0, 100)
    assert one(con, "SELECT count(*) FROM residents WHERE age < 16 AND income > 0 OR income % 100 <> 0") == (
        0,
    )
    assert one(con, "SELECT avg((district_code = '990101')::INT) FROM residents")[0] == pytest.approx(
        0.14, abs=0.006
    )
    assert one(con, "SELECT avg((sex = 'M')::INT) FROM residents")[0] == pytest.approx(0.512, abs=0.006)
    local_urban, local_county = one(
        con,
        "SELECT avg((hukou = 'local')::INT) FILTER (district_code < '990120'), "
        "avg((hukou = 'local')::INT) FILTER (district_code > '990120') FROM residents",
    )
    assert local_urban == pytest.approx(0.80, abs=0.01)
    assert local_county == pytest.approx(0.92, abs=0.01)


def test_insurance_rules(con: duckdb.DuckDBPyConnection) -> None:
    assert one(con, "SELECT avg((insurance = 'none')::INT) FROM residents")[0] == pytest.approx(
        0.03, abs=0.004
    )
    forbidden_employee = "insurance = 'employee' AND (age < 18 OR (age < 60 AND income = 0))"
    assert one(con, f"SELECT count(*) FROM residents WHERE {forbidden_employee}") == (0,)
    worker_share = one(
        con,
        "SELECT avg((insurance = 'employee')::INT) FROM residents WHERE age BETWEEN 18 AND 59 AND income > 0",
    )[0]
    assert worker_share == pytest.approx(0.75, abs=0.01)  # u in [0.03, 0.78)


# ---- medical_visits (§8.6) --------------------------------------------------------------------------


def test_visit_counts_per_person(con: duckdb.DuckDBPyConnection) -> None:
    mean, none, five_or_more, most = one(
        con,
        "WITH k AS (SELECT r.person_id, count(v.visit_id) AS k FROM residents r "
        "LEFT JOIN medical_visits v USING (person_id) GROUP BY 1) "
        "SELECT avg(k), avg((k = 0)::INT), avg((k >= 5)::INT), max(k) FROM k",
    )
    assert 1.86 < mean < 1.94  # spec: 1.90
    assert 0.21 < none < 0.235  # spec: 22%
    assert 0.082 < five_or_more < 0.096  # spec: 8.9%
    assert most <= 16
    slots_ok = "visit_id // 16 = person_id AND visit_id % 16 < 16"
    assert one(
        con, f"SELECT count(*) FILTER (NOT ({slots_ok})), count(DISTINCT visit_id) FROM medical_visits"
    ) == (
        0,
        190_730,
    )
    dense_slots = one(
        con,
        "SELECT count(*) FROM (SELECT person_id, max(visit_id % 16) AS j, count(*) AS k "
        "FROM medical_visits GROUP BY 1) WHERE j <> k - 1",
    )
    assert dense_slots == (0,)


def test_visit_rows(con: duckdb.DuckDBPyConnection) -> None:
    assert one(con, "SELECT min(visit_date), max(visit_date) FROM medical_visits") == (
        date(2024, 1, 1),
        date(2024, 12, 31),
    )
    shares = dict(
        con.execute(
            "SELECT visit_type, count(*) / sum(count(*)) OVER () FROM medical_visits GROUP BY 1"
        ).fetchall()
    )
    assert shares["outpatient"] == pytest.approx(0.88, abs=0.005)
    assert shares["inpatient"] == pytest.approx(0.05, abs=0.003)
    # los_days is NULL exactly for non-inpatient visits, 1..90 otherwise
    assert one(
        con, "SELECT count(*) FROM medical_visits WHERE (los_days IS NULL) <> (visit_type <> 'inpatient')"
    ) == (0,)
    assert one(con, "SELECT min(los_days), max(los_days) FROM medical_visits")[0] >= 1
    assert one(con, "SELECT max(los_days) FROM medical_visits")[0] <= 90
    assert one(
        con,
        "SELECT count(*) FROM medical_visits WHERE (visit_type = 'emergency') <> (department = 'emergency')",
    ) == (0,)
    # levels per visit type: emergency and inpatient visits never go to primary care
    assert one(
        con,
        "SELECT count(*) FROM medical_visits JOIN hospitals USING (hospital_id) "
        "WHERE visit_type <> 'outpatient' AND level = 'primary'",
    ) == (0,)
    assert one(con, "SELECT count(DISTINCT department), count(DISTINCT hospital_id) FROM medical_visits") == (
        12,
        48,
    )
    wrong_department = (
        "(department = 'obgyn' AND (sex = 'M' OR age < 15 OR age > 55)) "
        "OR (department = 'pediatrics' AND age >= 14)"
    )
    assert one(
        con, f"SELECT count(*) FROM medical_visits JOIN residents USING (person_id) WHERE {wrong_department}"
    ) == (0,)
    child_pediatrics = one(
        con,
        "SELECT avg((department = 'pediatrics')::INT) FROM medical_visits JOIN residents USING (person_id) "
        "WHERE age < 14 AND visit_type <> 'emergency'",
    )[0]
    assert child_pediatrics == pytest.approx(0.60, abs=0.02)


def test_visit_money(con: duckdb.DuckDBPyConnection) -> None:
    assert one(con, "SELECT min(cost) >= 5, max(cost) <= 1000000 FROM medical_visits") == (True, True)
    median_outpatient = one(con, "SELECT median(cost) FROM medical_visits WHERE visit_type = 'outpatient'")[0]
    assert Decimal(120) < median_outpatient < Decimal(250)
    # reimbursed = cost x rate(insurance, type), rounded half up to the cent
    mismatches = one(
        con,
        "SELECT count(*) FROM medical_visits JOIN residents USING (person_id) "
        "WHERE reimbursed <> round(cost * CASE insurance WHEN 'none' THEN 0 "
        "WHEN 'resident' THEN (CASE WHEN visit_type = 'inpatient' THEN 0.6 ELSE 0.5 END) "
        "ELSE (CASE WHEN visit_type = 'inpatient' THEN 0.8 ELSE 0.7 END) END, 2)",
    )
    assert mismatches == (0,)


def test_hospitals_are_mostly_local(con: duckdb.DuckDBPyConnection) -> None:
    local = one(
        con,
        "SELECT avg((h.district_code = r.district_code)::INT) FROM medical_visits v "
        "JOIN residents r USING (person_id) JOIN hospitals h USING (hospital_id)",
    )[0]
    assert 0.72 < local < 0.78  # 0.75 local draws, less county tertiary care, plus chance


# ---- bus_trips (§8.8) -----------------------------------------------------------------------------


def test_trips_per_card(con: duckdb.DuckDBPyConnection) -> None:
    per_card, card_share, most = one(
        con,
        f"SELECT count(*) / count(DISTINCT card_id), count(DISTINCT card_id) / {N}, "
        "(SELECT max(c) FROM (SELECT count(*) AS c FROM bus_trips GROUP BY card_id)) FROM bus_trips",
    )
    assert 12.0 < per_card < 12.6  # spec: 12.3
    assert 0.745 < card_share < 0.78  # spec: about 76% have a card (a few cards have no trip)
    assert most <= 64
    assert one(
        con,
        "SELECT count(*) FROM bus_trips WHERE card_id <> 10000000000 + trip_id // 64",
    ) == (0,)
    wrong_type = one(
        con,
        "SELECT count(*) FROM bus_trips t JOIN residents r ON t.card_id = 10000000000 + r.person_id "
        "WHERE card_type <> CASE WHEN age < 6 THEN 'child' WHEN age < 18 THEN 'student' "
        "WHEN age >= 60 THEN 'senior' ELSE 'adult' END",
    )
    assert wrong_type == (0,)


def test_trip_rows(con: duckdb.DuckDBPyConnection) -> None:
    assert one(con, "SELECT min(trip_date), max(trip_date), count(DISTINCT trip_date) FROM bus_trips") == (
        date(2024, 3, 4),
        date(2024, 3, 17),
        14,
    )
    assert one(con, "SELECT min(tap_time), max(tap_time) FROM bus_trips") == (
        datetime(2024, 3, 4, 6, 0),
        datetime(2024, 3, 17, 21, 59),
    )
    assert one(con, "SELECT count(*) FROM bus_trips WHERE tap_time::DATE <> trip_date") == (0,)
    weekend_ratio = one(
        con,
        "SELECT avg((dayofweek(trip_date) IN (0, 6))::INT) FROM bus_trips",
    )[0]
    assert weekend_ratio == pytest.approx(4 * 0.55 / (10 + 4 * 0.55), abs=0.005)  # 2 weekends in 14 days
    peak_hours = one(
        con,
        "SELECT avg((hour(tap_time) IN (7, 8, 9, 17, 18, 19))::INT) FROM bus_trips "
        "WHERE card_type = 'student' AND dayofweek(trip_date) BETWEEN 1 AND 5",
    )[0]
    assert 0.84 < peak_hours < 0.88  # 0.80 peak draws + 0.20 x off-peak weight of those hours (30/72)
    bad_stops = one(
        con,
        "SELECT count(*) FROM bus_trips JOIN bus_lines USING (line_id) "
        "WHERE stop_id // 100 <> line_id OR stop_id % 100 NOT BETWEEN 1 AND n_stops",
    )
    assert bad_stops == (0,)
    local_lines = one(
        con,
        "SELECT avg((l.district_code = r.district_code)::INT) FROM bus_trips t "
        "JOIN residents r ON t.card_id = 10000000000 + r.person_id JOIN bus_lines l USING (line_id)",
    )[0]
    assert 0.65 < local_lines < 0.72  # 0.65 local plus Zipf draws that land at home
    assert one(con, "SELECT count(DISTINCT line_id) FROM bus_trips") == (120,)


def test_fares(con: duckdb.DuckDBPyConnection) -> None:
    fares = con.execute(
        "SELECT card_type, fare_type, list(DISTINCT fare ORDER BY fare) "
        "FROM bus_trips JOIN bus_lines USING (line_id) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    got = {(card, kind): [float(f) for f in values] for card, kind, values in fares}
    assert got == {
        ("adult", "distance"): [2.0, 3.0, 4.0, 5.0, 6.0],
        ("adult", "flat"): [2.0],
        ("child", "distance"): [0.0],
        ("child", "flat"): [0.0],
        ("senior", "distance"): [0.0],
        ("senior", "flat"): [0.0],
        ("student", "distance"): [1.0, 1.5, 2.0, 2.5, 3.0],
        ("student", "flat"): [1.0],
    }


# ---- metadata documents ---------------------------------------------------------------------------


def test_metadata_documents(generated: GeneratedFiles) -> None:
    assert set(generated.metadata) == {*PERSON_TABLES, "province"}
    docs = {
        name: DatasetMetadata.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        for name, path in generated.metadata.items()
        if name != "province"
    }
    summary = {
        name: (d.owner, d.classification.value, d.tables[0].privacy_unit, d.tables[0].max_rows_per_unit)
        for name, d in docs.items()
    }
    assert summary == {
        "residents": ("civil-affairs", "general", "person_id", 1),
        "medical_visits": ("health-commission", "important", "person_id", 5),
        "bus_trips": ("transport-bureau", "general", "card_id", 30),
    }
    for name, doc in docs.items():
        (table,) = doc.tables
        assert generated.metadata[name].parent / table.source == generated.parquet[name]
        parquet_columns = set(pq.read_schema(generated.parquet[name]).names)
        assert {c.name for c in table.columns} <= parquet_columns
        assert all(c.description for c in table.columns)
    trips = docs["bus_trips"].tables[0]
    line, day, stop = trips.column("line_id"), trips.column("trip_date"), trips.column("stop_id")
    assert line is not None and line.keys == list(range(1, 121))
    assert day is not None and day.keys is not None and day.keys[0] == "2024-03-04" and len(day.keys) == 14
    assert stop is not None and stop.keys is None
    cost = docs["medical_visits"].tables[0].column("cost")
    assert cost is not None and (cost.lower, cost.upper) == (0, 50_000)


def test_province_joins_the_person_tables_with_public_lookups(generated: GeneratedFiles) -> None:
    """One dataset for joins (issue 12): the person tables as in their own datasets, plus the
    district and hospital lists as public lookup tables keyed by their codes."""
    path = generated.metadata["province"]
    province = DatasetMetadata.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert [(t.name, t.public, t.join_keys) for t in province.tables] == [
        ("residents", False, None),
        ("medical_visits", False, None),
        ("districts", True, ["district_code"]),
        ("hospitals", True, ["hospital_id"]),
    ]
    assert province.classification.value == "important"
    for table in province.tables:
        assert path.parent / table.source == generated.parquet[table.name]


def test_public_keys_cover_the_data(generated: GeneratedFiles, con: duckdb.DuckDBPyConnection) -> None:
    for name, path in generated.metadata.items():
        if name == "province":  # the same tables as the person datasets
            continue
        (table,) = DatasetMetadata.model_validate(yaml.safe_load(path.read_text(encoding="utf-8"))).tables
        for column in table.columns:
            if column.keys is None:
                continue
            values = {
                v for (v,) in con.execute(f"SELECT DISTINCT {column.name}::VARCHAR FROM {name}").fetchall()
            }
            assert values <= {str(k) for k in column.keys}, (name, column.name)


def test_catalog_accepts_the_documents(generated: GeneratedFiles, tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    for path in generated.metadata.values():
        assert catalog.validate(path) == []


# ---- API and CLI ----------------------------------------------------------------------------------


def test_invalid_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest):
        generate(tmp_path, 0)
    with pytest.raises(InvalidRequest):
        generate(tmp_path, 10, chunk_size=0)
    with pytest.raises(InvalidRequest):
        generate(tmp_path, 10, seed=-1)
    assert list(tmp_path.iterdir()) == []


def test_failed_run_leaves_no_partial_files(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []

    def stop_after_first_chunk(done: int, total: int) -> None:
        calls.append((done, total))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(tmp_path, 5_000, chunk_size=2_000, progress=stop_after_first_chunk)
    assert calls == [(2_000, 5_000)]
    person_files = [
        p.name for p in tmp_path.iterdir() if not p.name.startswith(("districts", "hospitals", "bus_lines"))
    ]
    assert person_files == []


def test_progress_reports_every_chunk(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate(tmp_path, 2_500, chunk_size=1_000, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1_000, 2_500), (2_000, 2_500), (2_500, 2_500)]


def test_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox.catalog.synthetic",
            "--n",
            "3000",
            "--seed",
            "5",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "3,000 / 3,000 residents (100%)" in result.stderr
    assert "residents" in result.stdout and "bus_trips.yaml" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{t}.parquet" for t in ALL_TABLES] + [f"{t}.yaml" for t in (*PERSON_TABLES, "province")]
    )
    assert pq.read_metadata(tmp_path / "residents.parquet").num_rows == 3000
