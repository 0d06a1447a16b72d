"""Chart geometry for server-rendered SVG: budget meters, bars by label, weekly stacked columns.

The templates draw the shapes; this module only computes positions in a fixed viewBox, so charts
need no JavaScript and no inline style (the console's Content-Security-Policy forbids both).
Colours are CSS classes ``c0`` … ``c7``.
"""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 640
BAR_HEIGHT = 22
COLUMN_AREA = 180
PALETTE = 8


@dataclass(frozen=True)
class Meter:
    """A budget meter: spent and reserved as percentages of the granted amount."""

    spent: float
    reserved: float
    remaining: float
    spent_pct: float
    reserved_pct: float
    low: bool


def meter(granted: float, spent: float, reserved: float = 0.0) -> Meter:
    """The meter of one budget; ``low`` when less than 20% remains."""
    remaining = max(granted - spent - reserved, 0.0)
    if granted <= 0:
        return Meter(spent, reserved, remaining, 100.0, 0.0, True)
    spent_pct = min(100.0, 100.0 * spent / granted)
    reserved_pct = min(100.0 - spent_pct, 100.0 * reserved / granted)
    return Meter(
        spent, reserved, remaining, round(spent_pct, 2), round(reserved_pct, 2), remaining < 0.2 * granted
    )


@dataclass(frozen=True)
class Bar:
    """One horizontal bar."""

    label: str
    value: float
    y: int
    width: float


@dataclass(frozen=True)
class Bars:
    """Horizontal bars scaled to the largest value."""

    bars: list[Bar]
    height: int


def bars(items: list[tuple[str, float]]) -> Bars:
    """Horizontal bars for (label, value) pairs, longest = the chart's value area."""
    largest = max((v for _, v in items), default=0.0) or 1.0
    area = WIDTH - 260 - 70  # room for the value after the longest bar
    drawn = [
        Bar(label, value, i * (BAR_HEIGHT + 6), area * value / largest)
        for i, (label, value) in enumerate(items)
    ]
    return Bars(drawn, max(len(items), 1) * (BAR_HEIGHT + 6))


@dataclass(frozen=True)
class Segment:
    """One series' part of a column."""

    series: int
    value: float
    y: float
    height: float


@dataclass(frozen=True)
class Column:
    """One period's column."""

    label: str
    x: float
    width: float
    total: float
    segments: list[Segment]


@dataclass(frozen=True)
class Columns:
    """Stacked columns per period with a legend of series."""

    columns: list[Column]
    series: list[str]
    top: float
    height: int


def stacked(periods: list[tuple[str, dict[str, float]]]) -> Columns:
    """Stacked columns: one per (label, {series: value}) period, series coloured consistently."""
    series = sorted({name for _, values in periods for name in values})
    top = max((sum(values.values()) for _, values in periods), default=0.0) or 1.0
    slot = WIDTH / max(len(periods), 1)
    columns = []
    for index, (label, values) in enumerate(periods):
        base = float(COLUMN_AREA)
        segments = []
        for number, name in enumerate(series):
            value = values.get(name, 0.0)
            if value <= 0:
                continue
            height = COLUMN_AREA * value / top
            base -= height
            segments.append(Segment(number % PALETTE, value, base, height))
        columns.append(Column(label, index * slot + slot * 0.15, slot * 0.7, sum(values.values()), segments))
    return Columns(columns, series, top, COLUMN_AREA)
