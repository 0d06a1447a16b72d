"""Joins (issue 12): tables of one dataset joined on the privacy unit, and public lookup tables.

At a huge epsilon the answers equal plain DuckDB's join of the stored (bounded) tables; the
contribution bound of a join is re-derived here (k₁·k₂ on the unit, unchanged through a lookup);
neighbouring datasets (one person more, in both tables) get the same outcome; and every join the
rules do not allow is rejected before any data is read.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from query_support import HUGE_EPSILON, stored

from sandbox.catalog import Catalog, DatasetRecord
from sandbox.errors import MetadataInvalid, QueryRejected
from sandbox.query import Engine
from sandbox.query.plan import Grouping, Quantity

K_VISITS = 4
DISTRICTS = {"D1": ("city", "Zhongxin"), "D2": ("city", "Donghu"), "D3": ("county", "Qingyun")}


def tables(n: int, seed: int, *, extra_person: bool = False) -> dict[str, pa.Table]:
    generator = random.Random(seed)
    people: dict[str, list[Any]] = {"person_id": list(range(n)), "district": [], "age": [], "sex": []}
    visits: dict[str, list[Any]] = {"person_id": [], "visit_id": [], "kind": [], "cost": []}
    for pid in range(n):
        people["district"].append(generator.choice([*DISTRICTS, "D9", None]))
        people["age"].append(generator.randint(0, 99))
        people["sex"].append(generator.choice("FM"))
        for _ in range(generator.randint(0, K_VISITS + 2)):
            visits["person_id"].append(pid)
            visits["visit_id"].append(len(visits["visit_id"]))
            visits["kind"].append(generator.choice(["out", "in"]))
            visits["cost"].append(generator.randint(0, 1200))
    if extra_person:  # D': one more person, at the extremes, with more visits than the bound
        pid = 10**6
        for name, value in (("person_id", pid), ("district", "D3"), ("age", 250), ("sex", "M")):
            people[name].append(value)
        for i in range(K_VISITS + 3):
            visits["person_id"].append(pid)
            visits["visit_id"].append(10**6 + i)
            visits["kind"].append("in")
            visits["cost"].append(10**6)
    districts = {
        "code": list(DISTRICTS),
        "region": [v[0] for v in DISTRICTS.values()],
        "name": [v[1] for v in DISTRICTS.values()],
    }
    return {"people": pa.table(people), "visits": pa.table(visits), "districts": pa.table(districts)}


METADATA: dict[str, Any] = {
    "title": "joins test",
    "owner": "tests",
    "classification": "general",
    "tables": [
        {
            "name": "people",
            "source": "people.parquet",
            "privacy_unit": "person_id",
            "max_rows_per_unit": 1,
            "columns": [
                {"name": "person_id", "role": "privacy_unit"},
                {"name": "district", "role": "dimension"},
                {"name": "age", "role": "measure", "lower": 0, "upper": 100},
                {"name": "sex", "role": "dimension", "keys": ["F", "M"]},
            ],
        },
        {
            "name": "visits",
            "source": "visits.parquet",
            "privacy_unit": "person_id",
            "max_rows_per_unit": K_VISITS,
            "columns": [
                {"name": "person_id", "role": "privacy_unit"},
                {"name": "visit_id", "role": "identifier"},
                {"name": "kind", "role": "dimension", "keys": ["in", "out"]},
                {"name": "cost", "role": "measure", "lower": 0, "upper": 1000},
            ],
        },
        {
            "name": "districts",
            "source": "districts.parquet",
            "public": True,
            "join_keys": ["code"],
            "columns": [
                {"name": "code", "role": "dimension"},
                {"name": "region", "role": "dimension"},
                {"name": "name", "role": "dimension"},
            ],
        },
    ],
}


def register(
    catalog: Catalog, folder: Path, name: str, data: dict[str, pa.Table], **changes: Any
) -> DatasetRecord:
    folder.mkdir(parents=True, exist_ok=True)
    for table, rows in data.items():
        pq.write_table(rows, folder / f"{table}.parquet")
    document = {"dataset": name, **METADATA, **changes}
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return catalog.register(folder / f"{name}.yaml")


@pytest.fixture(scope="module")
def province(
    catalog: Catalog, tmp_path_factory: pytest.TempPathFactory
) -> tuple[DatasetRecord, DatasetRecord]:
    folder = tmp_path_factory.mktemp("joins")
    d = register(catalog, folder / "d", "joins_d", tables(300, seed=3))
    d_prime = register(catalog, folder / "dp", "joins_d_prime", tables(300, seed=3, extra_person=True))
    return d, d_prime


EXACT = [
    (
        "SELECT p.sex, COUNT(*), SUM(v.cost), AVG(v.cost) FROM people p "
        "JOIN visits v ON p.person_id = v.person_id GROUP BY p.sex",
        "SELECT p.sex, count(*), sum(v.cost__clamped), avg(v.cost__clamped) FROM people p "
        "JOIN visits v ON p.person_id = v.person_id WHERE p.sex IS NOT NULL GROUP BY 1",
    ),
    (
        "SELECT d.region, COUNT(DISTINCT person_id) AS persons, AVG(age) FROM people "
        "JOIN districts d ON people.district = d.code GROUP BY d.region",
        "SELECT d.region, count(DISTINCT p.person_id), avg(p.age__clamped) FROM people p "
        "JOIN districts d ON p.district = d.code GROUP BY 1",
    ),
    (
        "SELECT region, kind, COUNT(*) FILTER (WHERE cost > 500) FROM visits v "
        "LEFT JOIN people p USING (person_id) LEFT JOIN districts d ON p.district = d.code GROUP BY 1, 2",
        "SELECT d.region, v.kind, count(*) FILTER (WHERE v.cost > 500) FROM visits v "
        "LEFT JOIN people p ON v.person_id = p.person_id LEFT JOIN districts d ON p.district = d.code "
        "WHERE d.region IS NOT NULL GROUP BY 1, 2",
    ),
    (
        "SELECT FLOOR(p.age / 25) * 25 AS band, SUM(v.cost) FROM people p LEFT JOIN visits v "
        "ON p.person_id = v.person_id GROUP BY band",
        "SELECT floor(p.age__clamped / 25) * 25, coalesce(sum(v.cost__clamped), 0) FROM people p "
        "LEFT JOIN visits v ON p.person_id = v.person_id GROUP BY 1",
    ),
]


@pytest.mark.parametrize(("sql", "plain_sql"), EXACT, ids=[f"join{i}" for i in range(len(EXACT))])
def test_joins_are_exact_at_huge_epsilon(
    engine: Engine, catalog: Catalog, province: tuple[DatasetRecord, DatasetRecord], sql: str, plain_sql: str
) -> None:
    record = province[0]
    result = engine.query(record.name, sql, HUGE_EPSILON)
    width = len(result.columns) - len(result.accuracy)
    expected = {tuple(_key(v) for v in r[:width]): r[width:] for r in stored(catalog, record.name, plain_sql)}
    answered = {tuple(_key(v) for v in r[:width]): r[width:] for r in result.rows}
    assert set(expected) <= set(answered)
    for key, values in expected.items():
        got = answered[key]
        assert all(
            math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-6)
            for a, b in zip(got, values, strict=True)
        ), (key, got, values)


def _key(value: Any) -> Any:
    return float(value) if isinstance(value, int | float) else value


def test_the_contribution_bound_of_a_join(
    engine: Engine, province: tuple[DatasetRecord, DatasetRecord]
) -> None:
    """Re-derived: on the unit, k = k_people · k_visits = 1 · 4; a lookup multiplies by 1."""
    record = province[0]
    on_unit = engine.plan(
        record.name, "SELECT SUM(cost) FROM people p JOIN visits v ON p.person_id = v.person_id", 1.0
    )
    assert on_unit.query.max_rows_per_unit == 1 * K_VISITS
    (total,) = on_unit.quantities
    assert total.quantity is Quantity.SUM and total.calibration.sensitivity == K_VISITS * 1000
    lookup = engine.plan(
        record.name,
        "SELECT region, COUNT(*) FROM people JOIN districts ON district = code GROUP BY region",
        1.0,
    )
    assert lookup.query.max_rows_per_unit == 1
    assert lookup.grouping is Grouping.PUBLIC_KEYS
    assert [k[0] for k in lookup.public_groups] == ["city", "county"]
    assert lookup.quantities[0].calibration.sensitivity == 1
    itself = engine.plan(
        record.name, "SELECT COUNT(*) FROM visits a JOIN visits b ON a.person_id = b.person_id", 1.0
    )
    assert itself.query.max_rows_per_unit == K_VISITS * K_VISITS


def test_policies_see_the_declared_column_names(
    engine: Engine, province: tuple[DatasetRecord, DatasetRecord]
) -> None:
    plan = engine.plan(
        province[0].name,
        "SELECT d.name, COUNT(*) FROM visits v JOIN people p ON v.person_id = p.person_id "
        "JOIN districts d ON p.district = d.code WHERE v.cost > 10 GROUP BY d.name",
        1.0,
    )
    assert plan.summary.columns == frozenset({"name", "cost", "district", "code", "person_id"})
    assert plan.summary.table == "visits"
    assert plan.summary.group_by == ("name",)
    itself = engine.plan(
        province[0].name,
        "SELECT a.kind, COUNT(*) FROM visits a JOIN visits b ON a.person_id = b.person_id GROUP BY a.kind",
        1.0,
    )
    assert itself.summary.group_by == () and "kind" in itself.summary.columns  # internal name a_kind


PARITY = [sql for sql, _ in EXACT] + [
    "SELECT kind, MEDIAN(cost) FROM visits JOIN people USING (person_id) GROUP BY kind",
    "SELECT COUNT(*) FROM people p JOIN visits v ON p.person_id = v.person_id WHERE p.age > 99",
]


@pytest.mark.parametrize("sql", PARITY, ids=[f"parity{i}" for i in range(len(PARITY))])
def test_neighbours_get_the_same_outcome(
    engine: Engine, province: tuple[DatasetRecord, DatasetRecord], sql: str
) -> None:
    seen = []
    for record in province:
        result = engine.query(record.name, sql, HUGE_EPSILON)
        width = len(result.columns) - len(result.accuracy)
        seen.append((result.columns, [tuple(r[:width]) for r in result.rows], result.epsilon, result.delta))
    assert seen[0] == seen[1]


REJECTED = [
    ("SELECT COUNT(*) FROM people p RIGHT JOIN visits v ON p.person_id = v.person_id", "sql.join"),
    ("SELECT COUNT(*) FROM people p FULL JOIN visits v ON p.person_id = v.person_id", "sql.join"),
    ("SELECT COUNT(*) FROM people p CROSS JOIN visits v", "sql.join"),
    ("SELECT COUNT(*) FROM people p, visits v", "sql.join"),
    ("SELECT COUNT(*) FROM people p JOIN visits v ON p.age = v.cost", "sql.join"),
    ("SELECT COUNT(*) FROM people p JOIN visits v ON p.person_id < v.person_id", "sql.join"),
    ("SELECT COUNT(*) FROM people p JOIN visits v ON p.person_id = v.person_id AND v.cost > 1", "sql.join"),
    ("SELECT COUNT(*) FROM districts d JOIN people p ON p.district = d.code", "sql.join"),
    ("SELECT COUNT(*) FROM people JOIN districts d ON people.district = d.name", "sql.join"),
    ("SELECT COUNT(*) FROM people p JOIN districts d ON p.age = d.code", "sql.join"),
    ("SELECT COUNT(*) FROM districts", "sql.join"),
    (
        "SELECT COUNT(*) FROM people p JOIN visits v ON p.person_id = v.person_id WHERE person_id > 1",
        "sql.privacy_unit_usage",
    ),
    (
        "SELECT COUNT(*) FROM people p JOIN visits v ON p.person_id = v.person_id GROUP BY v.person_id",
        "sql.group_by_privacy_unit",
    ),
    (
        "SELECT COUNT(*) FROM people p JOIN visits v ON p.person_id = v.person_id WHERE v.visit_id > 1",
        "sql.identifier_column",
    ),
    (
        "SELECT COUNT(*) FROM people p JOIN visits v ON p.person_id = v.person_id WHERE x.age > 1",
        "sql.unknown_column",
    ),
    ("SELECT COUNT(*) FROM people p JOIN nope n ON p.person_id = n.person_id", "sql.unknown_table"),
    (
        "SELECT COUNT(*) FROM people p JOIN (SELECT * FROM visits) v ON p.person_id = v.person_id",
        "sql.join",
    ),
]


@pytest.mark.parametrize(("sql", "code"), REJECTED, ids=[f"{c}-{i}" for i, (_, c) in enumerate(REJECTED)])
def test_joins_outside_the_rules_are_rejected(
    engine: Engine, province: tuple[DatasetRecord, DatasetRecord], sql: str, code: str
) -> None:
    with pytest.raises(QueryRejected) as caught:
        engine.plan(province[0].name, sql, 1.0)
    assert caught.value.code == code, caught.value.message


def test_tables_about_different_units_are_not_joined(
    catalog: Catalog, tmp_path: Path, engine: Engine
) -> None:
    data = tables(20, seed=2)
    data["visits"] = data["visits"].rename_columns(["card_id", "visit_id", "kind", "cost"])
    document = yaml.safe_load(yaml.safe_dump(METADATA))
    visits = document["tables"][1]
    visits["privacy_unit"] = "card_id"
    visits["columns"][0]["name"] = "card_id"
    record = register(catalog, tmp_path, "joins_cards", data, tables=document["tables"])
    with pytest.raises(QueryRejected) as caught:
        engine.plan(
            record.name, "SELECT COUNT(*) FROM people p JOIN visits v ON p.person_id = v.card_id", 1.0
        )
    assert caught.value.code == "sql.join" and "different privacy units" in caught.value.message


def test_a_lookup_key_must_be_unique(catalog: Catalog, tmp_path: Path) -> None:
    data = tables(20, seed=1)
    data["districts"] = pa.table({"code": ["D1", "D1"], "region": ["a", "b"], "name": ["x", "y"]})
    with pytest.raises(MetadataInvalid) as caught:
        register(catalog, tmp_path, "joins_dup", data)
    assert "join key 'code' must be unique" in str(caught.value.details)


def test_public_tables_hold_no_persons(catalog: Catalog, tmp_path: Path) -> None:
    document = yaml.safe_load(yaml.safe_dump(METADATA))
    lookup = document["tables"][2]
    lookup["columns"].append({"name": "pop", "role": "measure", "lower": 0, "upper": 1})
    lookup["privacy_unit"] = "code"
    lookup["join_keys"] = ["nope"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"dataset": "joins_bad", **document}), encoding="utf-8")
    problems = "\n".join(catalog.validate(path))
    assert "a public table has no privacy_unit" in problems
    assert "join key 'nope' must be a declared dimension column" in problems
    assert "a public table has dimension columns only" in problems


def test_an_owner_bound_clamps_a_join_at_query_time(catalog: Catalog, tmp_path: Path, engine: Engine) -> None:
    """max_joined_rows_per_unit: 2 (below 1 · 4): each person keeps at most 2 joined rows, chosen by
    their rows' contents only, and the sensitivity follows the smaller bound."""
    data = tables(200, seed=5)
    record = register(catalog, tmp_path, "joins_clamped", data, max_joined_rows_per_unit=2)
    sql = "SELECT COUNT(*), SUM(v.cost) FROM people p JOIN visits v ON p.person_id = v.person_id"
    plan = engine.plan(record.name, sql, 1.0)
    assert plan.query.max_rows_per_unit == 2
    assert {p.calibration.sensitivity for p in plan.quantities} == {2, 2 * 1000}
    ((count, total),) = engine.query(record.name, sql, HUGE_EPSILON).rows
    ((expected,),) = stored(
        catalog,
        record.name,
        "SELECT sum(least(n, 2)) FROM (SELECT p.person_id, count(*) AS n FROM people p "
        "JOIN visits v ON p.person_id = v.person_id GROUP BY 1)",
    )
    assert count == expected and 0 <= total <= 2 * 1000 * 200
    unclamped = register(catalog, tmp_path / "plain", "joins_unclamped", data, max_joined_rows_per_unit=8)
    assert engine.plan(unclamped.name, sql, 1.0).query.max_rows_per_unit == K_VISITS
    first = engine.query(record.name, sql, HUGE_EPSILON).rows
    assert engine.query(record.name, sql.replace("COUNT(*)", "COUNT(*) AS n"), HUGE_EPSILON).rows == first


def test_clamped_joins_on_neighbours(catalog: Catalog, tmp_path: Path, engine: Engine) -> None:
    """With the query-time clamp, D and D′ (one person more, beyond every bound) still differ only by
    that person: the same keys and charge, counts within the clamp."""
    d = register(catalog, tmp_path / "d", "clamp_d", tables(150, seed=9), max_joined_rows_per_unit=2)
    d_prime = register(
        catalog,
        tmp_path / "dp",
        "clamp_dp",
        tables(150, seed=9, extra_person=True),
        max_joined_rows_per_unit=2,
    )
    sql = (
        "SELECT kind, COUNT(*) AS n, SUM(cost) FROM visits v JOIN people p ON v.person_id = p.person_id "
        "GROUP BY kind"
    )
    a, b = (engine.query(r.name, sql, HUGE_EPSILON) for r in (d, d_prime))
    assert [r[0] for r in a.rows] == [r[0] for r in b.rows] and (a.epsilon, a.delta) == (b.epsilon, b.delta)
    assert sum(y[1] - x[1] for x, y in zip(a.rows, b.rows, strict=True)) == 2
