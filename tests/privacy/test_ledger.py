"""The charge through the real query pipeline is the same on D and D′ (issue 8, invariant 1).

Each side gets its own world: the pair's catalog, a ``ControlPlane`` on a fresh SQLite state store,
the dataset's registration, an analyst organisation and the owner's approval (with a minimum group
size, so every answer also passes small-group suppression). The same requests then go through
``QueryPipeline.answer`` on both sides — answered queries, a replay, a query refused at planning,
a query denied by the policy and a query that fails in DuckDB after its budget was reserved — and
the analyst's view of the ledger must match field by field: status, charged epsilon and delta,
error code and rule, result shape (columns and row count), and the remaining budget.

Few fixed adversarial pairs only: a state store per side makes this slower than the library-level
tests.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from privacy_data import DATASET, Pair, Registered
from privacy_pairs import PAIRS

from sandbox.control import ControlPlane
from sandbox.errors import SandboxError
from sandbox.pipeline import QueryPipeline
from sandbox.principals import Principal, Role
from sandbox.query import Engine
from sandbox.settings import Settings

OPERATOR = Principal("olga", frozenset({Role.OPERATOR}))
OWNER = Principal("otto", frozenset({Role.OWNER}), "tests")  # the metadata's owner
ANALYST = Principal("alice", frozenset({Role.ANALYST}), "acme")
EPSILON, DELTA = 1.0, 1e-6
# name, SQL, epsilon, delta, engine ("tight": 1MB of DuckDB memory, where a grouped MEDIAN fails)
REQUESTS: list[tuple[str, str, float, float, str]] = [
    ("public keys", "SELECT k, COUNT(*) AS n, SUM(x) AS s FROM people GROUP BY k", EPSILON, 0.0, "normal"),
    ("selection", "SELECT s, AVG(n) AS m FROM people GROUP BY s", EPSILON, DELTA, "normal"),
    ("replay", "SELECT s, AVG(n) AS m FROM people GROUP BY s", EPSILON, DELTA, "normal"),
    (
        "order + limit",
        "SELECT t, COUNT(*) AS n FROM people GROUP BY t ORDER BY n DESC LIMIT 1",
        EPSILON,
        0.0,
        "normal",
    ),
    ("delta not spent", "SELECT COUNT(*) AS n, MEDIAN(x) AS m FROM people", EPSILON, DELTA, "normal"),
    ("refused at planning", "SELECT uid, COUNT(*) FROM people GROUP BY uid", EPSILON, 0.0, "normal"),
    ("over the per-query cap", "SELECT COUNT(*) FROM people", 2 * EPSILON, 0.0, "normal"),
    ("fails in DuckDB", "SELECT s, MEDIAN(x) AS m FROM people GROUP BY s", EPSILON, DELTA, "tight"),
]


def _world(side: Registered, home: Path) -> tuple[ControlPlane, dict[str, QueryPipeline]]:
    """A control plane on a fresh SQLite store with the side's dataset registered and approved."""
    assert side.record is not None
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'state.db'}")
    control = ControlPlane(settings, create=True)
    control.record_registration(OPERATOR, side.record)
    columns = [
        c.name for t in side.record.metadata.tables for c in t.columns if c.role.value != "privacy_unit"
    ]
    request = control.request_access(
        ANALYST,
        side.record,
        purpose="neighbouring-dataset ledger test",
        columns=columns,
        epsilon=100.0,
        delta=1e-3,
        valid_until=datetime.now(UTC) + timedelta(days=1),
    )
    control.approve(
        OWNER,
        request.id,
        side.record,
        max_epsilon_per_query=EPSILON,
        max_delta_per_query=DELTA,
        min_group_size=41,
    )
    engines = {
        "normal": Engine(side.catalog, settings),
        "tight": Engine(side.catalog, settings.model_copy(update={"duckdb_memory_limit": "1MB"})),
    }
    return control, {name: QueryPipeline(side.catalog, engine, control) for name, engine in engines.items()}


def _ask(pipelines: dict[str, QueryPipeline]) -> list[tuple[str, Any]]:
    """Every request's outcome as the analyst sees it (answers: shape and charge, not values)."""
    seen: list[tuple[str, Any]] = []
    for name, sql, epsilon, delta, engine in REQUESTS:
        for other, pipeline in pipelines.items():
            if other != engine:  # DuckDB opens a file with one configuration at a time
                pipeline.engine.close()
        try:
            answer = pipelines[engine].answer(ANALYST, DATASET, sql, epsilon, delta)
        except SandboxError as error:
            seen.append((name, ("error", type(error).__name__, error.code, error.rule)))
            continue
        keys = [row[0] for row in answer["rows"]] if "public" in name else None
        shape = (answer["columns"], len(answer["rows"]), keys, answer["grouping"], answer["cached"])
        charge = (answer["epsilon_spent"], answer["delta_spent"], answer["budget"])
        seen.append((name, ("answered", shape, charge)))
    return seen


def _ledger(control: ControlPlane) -> list[tuple[Any, ...]]:
    """The analyst's query history (oldest first) and budget, without ids, SQL and times."""
    history = [
        (q.status, q.epsilon, q.delta, q.cached, q.rule, q.error_code, q.result_shape)
        for q in reversed(control.list_queries(ANALYST, dataset=DATASET))
    ]
    budget = [
        (b.epsilon_spent, b.epsilon_reserved, b.epsilon_remaining, b.delta_spent, b.delta_remaining)
        for b in control.budget(ANALYST)
    ]
    return [*history, *budget]


def _on_both(pair: Pair, folder: Path, work: Callable[[dict[str, QueryPipeline]], Any]) -> list[Any]:
    """Run ``work`` in each side's world; each side's outcome and its ledger."""
    pair.register(folder)
    found = []
    for side, name in ((pair.d, "d"), (pair.d_prime, "d_prime")):
        control, pipelines = _world(side, folder / name / "control")
        try:
            found.append((work(pipelines), _ledger(control)))
        finally:
            for pipeline in pipelines.values():
                pipeline.engine.close()
            control.close()
    return found


@pytest.mark.parametrize("name", ["parquet-ns", "csv"])
def test_ledger_charges_alike(name: str, tmp_path: Path) -> None:
    """The same requests are answered, refused or failed alike and charged alike on D and D′."""
    pair = PAIRS[name][0]
    (seen_d, ledger_d), (seen_d_prime, ledger_d_prime) = _on_both(pair, tmp_path, _ask)
    outcomes = dict(seen_d)
    assert outcomes["fails in DuckDB"][:3] == ("error", "QueryFailed", "query.execution_failed"), outcomes
    assert outcomes["refused at planning"][0] == "error" and outcomes["replay"][1][-1] is True, outcomes
    assert outcomes["over the per-query cap"][0] == "error", outcomes
    assert seen_d == seen_d_prime, f"{pair.describe()}\nD:  {seen_d}\nD′: {seen_d_prime}"
    assert ledger_d == ledger_d_prime, f"{pair.describe()}\nD:  {ledger_d}\nD′: {ledger_d_prime}"
    statuses = [entry[0] for entry in ledger_d[: len(REQUESTS)]]
    assert {"answered", "rejected", "failed"} <= {str(getattr(s, "value", s)) for s in statuses}, ledger_d
