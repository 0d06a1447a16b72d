"""Plans are cached per text and parameters; the validation of a text is shared by all its plans."""

from __future__ import annotations

from query_support import Registrar

from sandbox.catalog import Catalog
from sandbox.query import Engine
from sandbox.settings import Settings


def test_one_validation_serves_every_epsilon_of_a_text(catalog: Catalog, shared: Registrar) -> None:
    """A new epsilon (or delta) gives a new plan with its own calibration, over the same validated
    query; another text is validated anew."""
    record = shared("pums")
    table = record.metadata.tables[0].name
    engine = Engine(catalog, Settings(max_epsilon_per_query=10.0))
    sql = f'SELECT COUNT(*) AS n FROM "{table}"'
    low, high = engine.plan(record.name, sql, 0.5), engine.plan(record.name, sql, 1.0)
    assert low is not high and low.query is high.query
    assert low.quantities[0].calibration.scale > high.quantities[0].calibration.scale
    assert engine.plan(record.name, sql.replace(" n ", " m "), 0.5).query is not low.query
    engine.close()
