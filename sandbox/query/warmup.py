"""Pay the engine's first-call costs when a process starts, not on an analyst's first query.

sqlglot builds its parser and generator tables on first use (30–70 ms), OpenDP loads its library
and DuckDB its in-memory instance for key identities. ``warm_up`` plans a ``COUNT(*)`` on one
table of each registered dataset and generates its SQL: metadata only, no data is read, no
budget is involved.
"""

from __future__ import annotations

import logging

from sandbox.errors import SandboxError
from sandbox.query import keys
from sandbox.query.engine import Engine
from sandbox.query.rewrite import aggregate_sql

log = logging.getLogger(__name__)
WARM_UP_EPSILON = 1.0


def warm_up(engine: Engine) -> None:
    """Plan (never execute) one query per registered dataset; failures are logged, not raised."""
    keys.identities("VARCHAR", ("warm-up",))
    for record in engine.catalog.list():
        table = record.metadata.tables[0].name.replace('"', '""')
        try:
            epsilon = min(WARM_UP_EPSILON, engine.settings.max_epsilon_per_query)
            plan = engine.plan(record.name, f'SELECT COUNT(*) FROM "{table}"', epsilon)
            aggregate_sql(plan)
        except SandboxError as error:
            log.warning("warm-up of dataset %s failed: %s", record.name, error.code)
