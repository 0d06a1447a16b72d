"""The analyst's ``max_joined_rows_per_unit``: a per-query bound on a person's joined rows.

It may only lower the join's bound (the product of the tables' bounds, or the owner's
``max_joined_rows_per_unit`` when smaller): the plan's sensitivities follow it, DuckDB keeps at
most that many joined rows per person (exact at a huge epsilon), neighbouring datasets get the same
outcome, and out-of-range values and queries without a join are refused before any data is read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from query_support import HUGE_EPSILON, stored
from test_joins import K_VISITS, register, tables

from sandbox.catalog import Catalog, DatasetRecord
from sandbox.errors import InvalidRequest
from sandbox.query import Engine

JOIN = "SELECT COUNT(*), SUM(v.cost) FROM people p JOIN visits v ON p.person_id = v.person_id"
PER_PERSON = (
    "SELECT sum(least(n, {m})) FROM (SELECT p.person_id, count(*) AS n FROM people p "
    "JOIN visits v ON p.person_id = v.person_id GROUP BY 1)"
)


@pytest.fixture(scope="module")
def plain(catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> DatasetRecord:
    return register(catalog, tmp_path_factory.mktemp("clamp"), "joins_request", tables(200, seed=21))


@pytest.fixture(scope="module")
def owned(catalog: Catalog, tmp_path_factory: pytest.TempPathFactory) -> DatasetRecord:
    folder = tmp_path_factory.mktemp("owned")
    return register(catalog, folder, "joins_owned", tables(200, seed=21), max_joined_rows_per_unit=3)


@pytest.mark.parametrize("m", [1, 2, K_VISITS])
def test_a_requested_bound_lowers_the_sensitivity_and_clamps(
    engine: Engine, catalog: Catalog, plain: DatasetRecord, m: int
) -> None:
    plan = engine.plan(plain.name, JOIN, 1.0, max_joined_rows_per_unit=m)
    assert plan.query.max_rows_per_unit == m
    assert {p.calibration.sensitivity for p in plan.quantities} == {m, m * 1000}
    ((count, total),) = engine.query(plain.name, JOIN, HUGE_EPSILON, max_joined_rows_per_unit=m).rows
    ((expected,),) = stored(catalog, plain.name, PER_PERSON.format(m=m))
    assert count == expected and 0 <= total <= m * 1000 * 200
    # which rows a person keeps depends on their rows only: the same query gives the same rows
    again = engine.query(
        plain.name, JOIN.replace("COUNT(*)", "COUNT(*) AS n"), HUGE_EPSILON, max_joined_rows_per_unit=m
    )
    assert again.rows == [[count, total]]


def test_it_never_raises_the_bound(engine: Engine, plain: DatasetRecord, owned: DatasetRecord) -> None:
    """From 1 to the join's bound (1 · 4 here; 3 when the owner says so), else 422 naming the rule."""
    assert engine.plan(owned.name, JOIN, 1.0).query.max_rows_per_unit == 3
    assert engine.plan(owned.name, JOIN, 1.0, max_joined_rows_per_unit=2).query.max_rows_per_unit == 2
    for record, bad, bound in ((plain, K_VISITS + 1, K_VISITS), (owned, 4, 3), (plain, 0, K_VISITS)):
        with pytest.raises(InvalidRequest) as caught:
            engine.plan(record.name, JOIN, 1.0, max_joined_rows_per_unit=bad)
        assert caught.value.code == "request.max_joined_rows_per_unit" and caught.value.http_status == 422
        assert f"from 1 to {bound}" in caught.value.message
    with pytest.raises(InvalidRequest, match="owner's max_joined_rows_per_unit"):
        engine.plan(owned.name, JOIN, 1.0, max_joined_rows_per_unit=4)
    with pytest.raises(InvalidRequest) as caught:
        engine.plan(plain.name, "SELECT COUNT(*) FROM visits", 1.0, max_joined_rows_per_unit=1)
    assert caught.value.code == "request.max_joined_rows_per_unit" and "one table" in caught.value.message


def test_it_is_part_of_the_fingerprint(engine: Engine, plain: DatasetRecord) -> None:
    """A clamped query is another release (replay keys on the fingerprint); unclamped ones keep theirs."""
    fingerprints = {
        m: engine.plan(plain.name, JOIN, 1.0, max_joined_rows_per_unit=m).summary.fingerprint
        for m in (None, 1, 2, K_VISITS)
    }
    assert len(set(fingerprints.values())) == 4
    bounds = {m: engine.plan(plain.name, JOIN, 1.0, max_joined_rows_per_unit=m).summary for m in (None, 2)}
    assert {m: summary.max_joined_rows_per_unit for m, summary in bounds.items()} == {None: None, 2: 2}


def test_requested_clamp_on_neighbours(catalog: Catalog, tmp_path: Path, engine: Engine) -> None:
    """D and D′ (one person more, beyond every bound) differ by at most the requested bound's rows,
    with the same keys, the same charge and the same plan."""
    d = register(catalog, tmp_path / "d", "request_d", tables(150, seed=9))
    d_prime = register(catalog, tmp_path / "dp", "request_dp", tables(150, seed=9, extra_person=True))
    sql = (
        "SELECT kind, COUNT(*) AS n, SUM(cost) FROM visits v JOIN people p ON v.person_id = p.person_id "
        "GROUP BY kind"
    )
    a, b = (engine.query(r.name, sql, HUGE_EPSILON, max_joined_rows_per_unit=1) for r in (d, d_prime))
    assert [r[0] for r in a.rows] == [r[0] for r in b.rows] and (a.epsilon, a.delta) == (b.epsilon, b.delta)
    assert sum(y[1] - x[1] for x, y in zip(a.rows, b.rows, strict=True)) == 1
    plans = [engine.plan(r.name, sql, 1.0, max_joined_rows_per_unit=1) for r in (d, d_prime)]
    assert [p.calibration.public() for p in plans[0].quantities] == [
        p.calibration.public() for p in plans[1].quantities
    ]
