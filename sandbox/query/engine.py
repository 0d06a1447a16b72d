"""The DP SQL engine: ``Engine(catalog).query(dataset, sql, epsilon)`` -> noisy ``Result``.

``plan`` validates and calibrates from the query text and metadata only; ``execute`` reads data.
The gateway calls them separately so that the policy check and the budget reservation happen in
between; ``query`` runs both for library use.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sandbox.catalog.models import DatasetRecord
from sandbox.catalog.registry import Catalog
from sandbox.errors import InvalidRequest, PayloadTooLarge
from sandbox.query import accuracy
from sandbox.query.execute import LockedDatabase
from sandbox.query.parse import parse_select
from sandbox.query.plan import Grouping, Quantity, QueryPlan, build_plan
from sandbox.query.release import exact_from_rows, release
from sandbox.query.result import Result
from sandbox.query.rewrite import aggregate_sql, exact_columns, quantile_sql
from sandbox.query.validate import ValidatedQuery, validate
from sandbox.settings import Settings


@dataclass(frozen=True)
class Estimate:
    """Cost and expected accuracy of a query, computed without reading data."""

    dataset: str
    epsilon: float
    delta: float
    grouping: str
    groups: int | None
    aggregates: list[dict[str, Any]]
    group_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "dataset": self.dataset,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "grouping": self.grouping,
            "groups": self.groups,
            "aggregates": self.aggregates,
            "group_size": self.group_size,
        }


PLAN_CACHE_SIZE = 1024


@dataclass(frozen=True)
class Statements:
    """The SQL generated for a plan: one aggregate statement and one per quantile."""

    aggregate: str  # empty when ``table_rows`` answers it
    names: list[str]
    quantiles: list[tuple[str, str]]
    table_rows: str | None = None  # the aggregate is the row count of this stored table, and nothing else


class Engine:
    """Plans, executes and releases DP queries over a catalog's datasets."""

    def __init__(self, catalog: Catalog, settings: Settings | None = None) -> None:
        self.catalog = catalog
        self.settings = settings or Settings()
        self._databases: dict[tuple[str, str], LockedDatabase] = {}
        self._plans: dict[tuple[str, str, str, float, float, int, int | None], QueryPlan] = {}
        self._validations: dict[tuple[str, str, str, int | None], ValidatedQuery] = {}
        self._statements: dict[str, Statements] = {}
        self._lock = threading.Lock()

    def plan(
        self,
        dataset: str,
        sql: str,
        epsilon: float,
        delta: float = 0.0,
        *,
        min_group_size: int = 0,
        max_joined_rows_per_unit: int | None = None,
    ) -> QueryPlan:
        """Validate ``sql`` and calibrate its noise; no data is read. ``max_joined_rows_per_unit``
        lowers a person's joined rows for this query (joins.py)."""
        if len(sql) > self.settings.max_sql_length:
            raise PayloadTooLarge(
                f"The SQL text is {len(sql)} characters; the limit is {self.settings.max_sql_length}.",
                code="request.sql_too_long",
            )
        record = self.catalog.get(dataset)
        return self.plan_for(
            record,
            sql,
            epsilon,
            delta,
            min_group_size=min_group_size,
            max_joined_rows_per_unit=max_joined_rows_per_unit,
        )

    def plan_for(
        self,
        record: DatasetRecord,
        sql: str,
        epsilon: float,
        delta: float = 0.0,
        *,
        min_group_size: int = 0,
        max_joined_rows_per_unit: int | None = None,
    ) -> QueryPlan:
        """``plan`` for an already loaded dataset record."""
        if epsilon > self.settings.max_epsilon_per_query:
            raise InvalidRequest(
                f"epsilon {epsilon:g} exceeds the service ceiling of "
                f"{self.settings.max_epsilon_per_query:g} per query.",
                code="request.epsilon",
            )
        key = (
            record.name,
            record.registration_id,
            sql,
            epsilon,
            delta,
            min_group_size,
            max_joined_rows_per_unit,
        )
        with self._lock:
            cached = self._plans.get(key)
        if cached is not None:
            return cached
        plan = build_plan(
            self._validated(record, sql, max_joined_rows_per_unit),
            epsilon,
            delta,
            min_group_size=min_group_size,
            max_key_cells=self.settings.max_public_key_cells,
            quantile_candidates=self.settings.quantile_candidates,
            mechanism=self.settings.mechanism,
        )
        with self._lock:
            self._plans[key] = plan
            if len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.pop(next(iter(self._plans)))
        return plan

    def _validated(
        self, record: DatasetRecord, sql: str, requested_bound: int | None = None
    ) -> ValidatedQuery:
        """The validated query of ``sql``, shared by its plans at every epsilon, delta and group size."""
        key = (record.name, record.registration_id, sql, requested_bound)
        with self._lock:
            cached = self._validations.get(key)
        if cached is not None:
            return cached
        validated = validate(parse_select(sql), record, requested_bound)
        with self._lock:
            self._validations[key] = validated
            if len(self._validations) > PLAN_CACHE_SIZE:
                self._validations.pop(next(iter(self._validations)))
        return validated

    def execute(self, plan: QueryPlan) -> Result:
        """Run the plan's SQL on the locked-down database and release noisy values."""
        database = self._database(plan.query.record)
        timeout = self.settings.query_timeout_s
        statements = self._statements_of(plan)
        if statements.table_rows is not None:
            rows = [(database.row_count(statements.table_rows, timeout),)]
        else:
            rows = database.run(statements.aggregate, timeout) if statements.names else []
        quantile_rows = {key: database.run(sql, timeout) for key, sql in statements.quantiles}
        return release(plan, exact_from_rows(plan, rows, statements.names, quantile_rows))

    def query(
        self,
        dataset: str,
        sql: str,
        epsilon: float,
        delta: float = 0.0,
        *,
        min_group_size: int = 0,
        max_joined_rows_per_unit: int | None = None,
    ) -> Result:
        """Plan and execute in one call."""
        return self.execute(
            self.plan(
                dataset,
                sql,
                epsilon,
                delta,
                min_group_size=min_group_size,
                max_joined_rows_per_unit=max_joined_rows_per_unit,
            )
        )

    def estimate(
        self,
        dataset: str,
        sql: str,
        epsilon: float,
        delta: float = 0.0,
        *,
        min_group_size: int = 0,
        group_size: int | None = None,
        max_joined_rows_per_unit: int | None = None,
    ) -> Estimate:
        """Cost and expected accuracy of ``sql``, without touching data."""
        plan = self.plan(
            dataset,
            sql,
            epsilon,
            delta,
            min_group_size=min_group_size,
            max_joined_rows_per_unit=max_joined_rows_per_unit,
        )
        return estimate_of(plan, group_size)

    def epsilon_for_ci(
        self,
        record: DatasetRecord,
        sql: str,
        ci: float,
        delta: float = 0.0,
        *,
        min_group_size: int = 0,
        group_size: int | None = None,
        max_joined_rows_per_unit: int | None = None,
    ) -> float:
        """The smallest epsilon whose 95% half-width on the first aggregate is at most ``ci``
        (for AVG, VARIANCE and STDDEV at the assumed ``group_size``); reads no data."""
        validated = self._validated(record, sql, max_joined_rows_per_unit)

        def make(epsilon: float) -> QueryPlan:
            return build_plan(
                validated,
                epsilon,
                delta,
                min_group_size=min_group_size,
                max_key_cells=self.settings.max_public_key_cells,
                quantile_candidates=self.settings.quantile_candidates,
                mechanism=self.settings.mechanism,
            )

        return accuracy.epsilon_for_ci(make, ci, self.settings.max_epsilon_per_query, group_size)

    def _statements_of(self, plan: QueryPlan) -> Statements:
        key = plan.summary.fingerprint
        with self._lock:
            statements = self._statements.get(key)
        if statements is None:
            query = plan.query
            names = [c.name for c in exact_columns(plan)]
            whole_table = query.where is None and query.source is None and not query.group_keys
            table_rows = query.stored.physical if whole_table and names == ["n"] else None
            statements = Statements(
                aggregate="" if table_rows is not None else aggregate_sql(plan),
                names=names,
                quantiles=[
                    (p.key, quantile_sql(plan, p)) for p in plan.quantities if p.quantity is Quantity.QUANTILE
                ],
                table_rows=table_rows,
            )
            with self._lock:
                self._statements[key] = statements
                if len(self._statements) > PLAN_CACHE_SIZE:
                    self._statements.pop(next(iter(self._statements)))
        return statements

    def close(self) -> None:
        """Close every open database."""
        with self._lock:
            for database in self._databases.values():
                database.close()
            self._databases.clear()

    def _database(self, record: DatasetRecord) -> LockedDatabase:
        key = (record.name, record.registration_id)
        with self._lock:
            database = self._databases.get(key)
            if database is None:
                for stale in [k for k in self._databases if k[0] == record.name]:
                    self._databases.pop(stale).close()
                database = LockedDatabase(
                    self.catalog.database_path(record.name),
                    memory_limit=self.settings.duckdb_memory_limit,
                    threads=self.settings.duckdb_threads,
                )
                self._databases[key] = database
            return database


def estimate_of(plan: QueryPlan, group_size: int | None = None) -> Estimate:
    """The data-free description of a plan's cost and noise (``group_size``: an assumed group size
    for the CIs of AVG, VARIANCE and STDDEV)."""
    aggregates = []
    for output in plan.query.outputs:
        if output.aggregate is None:
            continue
        spec = plan.query.aggregates[output.aggregate]
        expected = accuracy.expected(plan, spec, group_size)
        aggregates.append(
            {
                "column": output.name,
                "aggregate": spec.key,
                "mechanisms": [
                    {"quantity": p.key, **p.calibration.public()} for p in accuracy.quantities_of(plan, spec)
                ],
                "ci95": expected.ci95,
                "rank_error95": expected.rank_error95,
                "note": expected.note,
            }
        )
    return Estimate(
        dataset=plan.query.record.name,
        epsilon=plan.epsilon,
        delta=plan.delta_spent,
        grouping=plan.grouping.value,
        groups=None if plan.grouping is Grouping.THRESHOLD else len(plan.public_groups),
        aggregates=aggregates,
        group_size=group_size,
    )
