"""Helpers of the control-plane tests: principals, dataset records, query summaries, a clock."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from sqlalchemy import delete, update
from sqlalchemy.engine import make_url

from sandbox.catalog.models import (
    Classification,
    ColumnRole,
    ColumnSpec,
    DatasetMetadata,
    DatasetRecord,
    StoredColumn,
    StoredTable,
    TableSpec,
)
from sandbox.control import ControlPlane, PolicyView
from sandbox.principals import Principal, Role
from sandbox.query.summary import AggregateKind, QuerySummary
from sandbox.store.db import make_engine
from sandbox.store.models import AuditHead, Base

START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)

OPERATOR = Principal("olga", frozenset({Role.OPERATOR}))
OWNER = Principal("otto", frozenset({Role.OWNER}), "city_stats")
OTHER_OWNER = Principal("oscar", frozenset({Role.OWNER}), "health_bureau")
ANALYST_A = Principal("alice", frozenset({Role.ANALYST}), "acme")
ANALYST_A2 = Principal("arthur", frozenset({Role.ANALYST}), "acme")
ANALYST_B = Principal("bob", frozenset({Role.ANALYST}), "globex")


def libpq(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL as a libpq connection string."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def empty(url: str) -> None:
    """Delete every row and reset the chain head (fresh state inside a module's database)."""
    engine = make_engine(url)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != AuditHead.__tablename__:
                connection.execute(delete(table))
        connection.execute(update(AuditHead).values(seq=0, hash="0" * 64))
    engine.dispose()


@dataclass
class Clock:
    """A settable clock for the control plane."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        """Move time forward."""
        self.now += timedelta(**delta)


def make_dataset(
    name: str = "residents",
    owner: str = "city_stats",
    classification: Classification = Classification.GENERAL,
    version: str | None = None,
) -> DatasetRecord:
    """A small dataset record: table ``people`` (privacy unit, dimension, measures, identifier)."""
    columns = [
        ColumnSpec(name="person_id", role=ColumnRole.PRIVACY_UNIT),
        ColumnSpec(name="district", role=ColumnRole.DIMENSION, keys=["north", "south"]),
        ColumnSpec(name="age", role=ColumnRole.MEASURE, lower=0, upper=100),
        ColumnSpec(name="income", role=ColumnRole.MEASURE, lower=0, upper=200_000),
        ColumnSpec(name="ssn", role=ColumnRole.IDENTIFIER),
    ]
    metadata = DatasetMetadata(
        dataset=name,
        title=f"{name} register",
        owner=owner,
        classification=classification,
        tables=[TableSpec(name="people", source="people.parquet", privacy_unit="person_id", columns=columns)],
    )
    stored = StoredTable(
        name="people",
        physical="t_people",
        columns=[StoredColumn(name=c.name, duckdb_type="VARCHAR", physical=c.name) for c in columns],
        source_sha256=hashlib.sha256(b"source:" + name.encode()).hexdigest(),
        content_sha256=hashlib.sha256(b"content:" + name.encode()).hexdigest(),
    )
    return DatasetRecord(
        metadata=metadata,
        tables=[stored],
        version=version or hashlib.sha256(b"version:" + name.encode()).hexdigest(),
        registration_id="reg_" + hashlib.sha256(f"registration:{version or name}".encode()).hexdigest()[:32],
        registered_at=START,
        database_file=f"{name}.duckdb",
    )


def make_summary(
    dataset: DatasetRecord,
    *,
    columns: tuple[str, ...] = ("age",),
    aggregates: tuple[AggregateKind, ...] = (AggregateKind.COUNT,),
    group_by: tuple[str, ...] = (),
    epsilon: float = 0.1,
    delta: float = 0.0,
    sql: str | None = None,
) -> QuerySummary:
    """A query summary; the fingerprint derives from SQL, epsilon, delta and version (as the planner's)."""
    text = sql or f"SELECT COUNT(*) FROM people WHERE age > 0 -- {uuid4().hex}"
    fingerprint = hashlib.sha256(f"{text}|{epsilon}|{delta}|{dataset.version}".encode()).hexdigest()
    return QuerySummary(
        dataset=dataset.name,
        dataset_version=dataset.registration_id,
        table="people",
        columns=frozenset(columns),
        aggregates=frozenset(aggregates),
        group_by=group_by,
        epsilon=epsilon,
        delta=delta,
        normalized_sql=text,
        fingerprint=fingerprint,
    )


@dataclass
class Granter:
    """Request-and-approve helper with sensible defaults."""

    cp: ControlPlane
    clock: Clock

    def __call__(
        self,
        analyst: Principal,
        dataset: DatasetRecord,
        *,
        owner: Principal = OWNER,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        columns: tuple[str, ...] = ("age", "district", "income"),
        days: float = 30,
        **approval: Any,
    ) -> PolicyView:
        request = self.cp.request_access(
            analyst,
            dataset,
            purpose="labour market study",
            columns=list(columns),
            epsilon=epsilon,
            delta=delta,
            valid_until=self.clock.now + timedelta(days=days),
        )
        approval.setdefault("max_epsilon_per_query", min(epsilon, 1.0))
        approval.setdefault("max_delta_per_query", delta)
        return self.cp.approve(owner, request.id, dataset, **approval)
