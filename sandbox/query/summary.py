"""What the control plane needs to know about a validated query, without any data."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class AggregateKind(StrEnum):
    """Aggregate kinds an owner can allow in a policy."""

    COUNT = "count"
    COUNT_DISTINCT = "count_distinct"
    SUM = "sum"
    AVG = "avg"
    VARIANCE = "variance"
    STDDEV = "stddev"
    QUANTILE = "quantile"


@dataclass(frozen=True)
class QuerySummary:
    """A validated query as seen by the policy engine and the ledger.

    ``fingerprint`` is the SHA-256 of the normalised AST, the epsilon, the delta and the dataset
    version: two queries with the same fingerprint are the same release (replay).
    """

    dataset: str
    dataset_version: str
    table: str
    columns: frozenset[str]
    aggregates: frozenset[AggregateKind]
    group_by: tuple[str, ...]
    epsilon: float
    delta: float
    normalized_sql: str
    fingerprint: str
    max_joined_rows_per_unit: int | None = None  # the analyst's join bound, when given
