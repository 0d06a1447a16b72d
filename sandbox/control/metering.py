"""Metering (可计量): usage per organisation and dataset for a period, as JSON-ready rows or CSV.

Counts come from the query record; ``epsilon_spent`` / ``delta_spent`` are what the ledger will
never give back: answered and failed queries, and reservations still open (in flight, or left by
a crash). Replays and rejections cost nothing.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from sandbox.budget import delta_float, epsilon_float
from sandbox.control.ledger import QueryStatus
from sandbox.store.models import Query


class UsageRow(BaseModel):
    """Usage of one organisation on one dataset in the period."""

    model_config = ConfigDict(frozen=True)

    organisation: str | None
    dataset: str
    queries_answered: int
    queries_rejected: int
    queries_cached: int
    queries_failed: int
    queries_in_flight: int
    epsilon_spent: float
    delta_spent: float


class UsageReport(BaseModel):
    """Usage rows for ``since <= time < until``."""

    model_config = ConfigDict(frozen=True)

    since: datetime | None
    until: datetime | None
    rows: tuple[UsageRow, ...]

    def to_csv(self) -> str:
        """The rows as CSV with a header."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        fields = list(UsageRow.model_fields)
        writer.writerow(fields)
        for row in self.rows:
            values = row.model_dump()
            writer.writerow(["" if values[f] is None else values[f] for f in fields])
        return buffer.getvalue()


def _count(status: QueryStatus) -> ColumnElement[int]:
    return func.sum(case((Query.status == status.value, 1), else_=0))


def usage(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    organisation: str | None = None,
    dataset: str | None = None,
    dataset_owner: str | None = None,
) -> UsageReport:
    """Usage rows per (organisation, dataset); ``dataset_owner`` restricts to one owner's datasets."""
    statement = select(
        Query.organisation,
        Query.dataset,
        _count(QueryStatus.ANSWERED),
        _count(QueryStatus.REJECTED),
        _count(QueryStatus.REPLAYED),
        _count(QueryStatus.FAILED),
        _count(QueryStatus.RESERVED),
        func.coalesce(func.sum(Query.epsilon), 0),
        func.coalesce(func.sum(Query.delta), 0),
    ).group_by(Query.organisation, Query.dataset)
    if since is not None:
        statement = statement.where(Query.created_at >= since)
    if until is not None:
        statement = statement.where(Query.created_at < until)
    if organisation is not None:
        statement = statement.where(Query.organisation == organisation)
    if dataset is not None:
        statement = statement.where(Query.dataset == dataset)
    if dataset_owner is not None:
        statement = statement.where(Query.dataset_owner == dataset_owner)
    rows = [
        UsageRow(
            organisation=org,
            dataset=name,
            queries_answered=int(answered or 0),
            queries_rejected=int(rejected or 0),
            queries_cached=int(cached or 0),
            queries_failed=int(failed or 0),
            queries_in_flight=int(in_flight or 0),
            epsilon_spent=epsilon_float(int(epsilon)),
            delta_spent=delta_float(int(delta)),
        )
        for org, name, answered, rejected, cached, failed, in_flight, epsilon, delta in session.execute(
            statement
        )
    ]
    rows.sort(key=lambda r: (r.organisation or "", r.dataset))
    return UsageReport(since=since, until=until, rows=tuple(rows))
