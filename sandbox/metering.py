"""Metering (可计量): usage per organisation and dataset for a period."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


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
    """Usage rows for ``[since, until)``."""

    model_config = ConfigDict(frozen=True)

    since: datetime | None
    until: datetime | None
    rows: tuple[UsageRow, ...]
