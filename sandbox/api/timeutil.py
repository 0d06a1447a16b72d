"""Timestamps at the API edge: naive ones are read as UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def utc(moment: datetime | None) -> datetime | None:
    """``moment`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
