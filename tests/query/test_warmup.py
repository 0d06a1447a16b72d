"""The start-up warm-up plans one query per dataset from metadata alone: no data, no failure."""

from __future__ import annotations

from pathlib import Path

from query_support import Registrar

from sandbox.catalog import Catalog
from sandbox.query import Engine
from sandbox.query.warmup import warm_up
from sandbox.settings import Settings


def test_warm_up_plans_each_dataset_without_opening_its_database(catalog: Catalog, shared: Registrar) -> None:
    """After the warm-up the COUNT(*) plan of the dataset is cached and no DuckDB file is open."""
    record = shared("pums")
    engine = Engine(catalog, Settings(max_epsilon_per_query=0.5))
    warm_up(engine)
    table = record.metadata.tables[0].name
    planned = [key for key in engine._plans if key[0] == record.name]
    assert planned == [
        (record.name, record.registration_id, f'SELECT COUNT(*) FROM "{table}"', 0.5, 0.0, 0, None)
    ]
    assert engine._databases == {}
    engine.close()


def test_warm_up_of_an_empty_catalog(tmp_path: Path) -> None:
    """No dataset registered: nothing to plan, and no error."""
    engine = Engine(Catalog(tmp_path / "home"), Settings())
    warm_up(engine)
    assert engine._plans == {}
    engine.close()
