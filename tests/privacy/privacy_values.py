"""What one unit may change in a released value: its key identity, its noise width, its reach.

``key_of`` keeps apart keys Python would merge; ``ci_of`` reads the 95% noise half-widths of an
answer; ``allowed`` is the range of a released aggregate and how far one added unit can move it
before noise (docs/dp.md, "Base quantities and their sensitivities").
"""

from __future__ import annotations

import math
from typing import Any

from privacy_data import Profile
from privacy_shapes import Aggregate

from sandbox.query import Result
from sandbox.settings import Settings

QUANTILE_CANDIDATES = Settings().quantile_candidates
NOISE_WIDTHS = 20.0  # slack in 95% half-widths: a Laplace draw beyond it has probability < 1e-20
Key = tuple[tuple[str, str], ...]


def key_of(values: list[Any]) -> Key:
    """A key that keeps apart values Python would merge (1 and 1.0 and True, dates and strings)."""
    return tuple((type(v).__name__, repr(v)) for v in values)


def keys_of(result: Result) -> list[Any]:
    width = len(result.columns) - len(result.accuracy)
    return [r[:width] for r in result.rows][:8]


def ci_of(result: Result) -> dict[Key, dict[str, float]]:
    """Per released key, the 95% noise half-width of each aggregate column."""
    width = len(result.columns) - len(result.accuracy)
    cis: dict[Key, dict[str, float]] = {}
    for index, row in enumerate(result.rows):
        cis[key_of(row[:width])] = {acc.column: acc.ci95[index] or 0.0 for acc in result.accuracy}
    return cis


def allowed(aggregate: Aggregate, profile: Profile, count: Any) -> tuple[float, float, float]:
    """Range of a released value and how far one added unit may move it (before noise)."""
    k = profile.max_rows_per_unit
    if aggregate.kind in ("count", "units") or aggregate.column is None:
        return 0.0, math.inf, float(k)
    bounds = profile.bounds(aggregate.column)
    unit = 10.0 ** -(bounds.scale or 0) if aggregate.column == "x" else 1.0
    n = max(float(count or 0), 1.0)
    if aggregate.kind == "sum":
        return -math.inf, math.inf, k * bounds.magnitude + unit
    if aggregate.kind == "avg":
        return bounds.lower, bounds.upper, min(bounds.width, k * bounds.width / n) + unit
    if aggregate.kind == "quantile":
        # candidates c_i = L + i * step, step = ceil((U - L) / (m - 1)): the last may pass U
        units = round(bounds.width / unit)
        last = max(min(QUANTILE_CANDIDATES, units + 1) - 1, 1)
        top = bounds.lower + last * math.ceil(units / last) * unit
        return bounds.lower, top, top - bounds.lower
    half = (bounds.width / 2) ** 2
    variance = min(half, (k + 1) * bounds.width**2 / max(n - 1, 1.0)) + k * bounds.width**2 * 2**-20
    if aggregate.kind == "variance":
        return 0.0, half, variance + unit
    return 0.0, bounds.width / 2, math.sqrt(variance) + unit
