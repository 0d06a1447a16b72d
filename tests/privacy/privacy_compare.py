"""Run one query on D and on D′, and state what may differ between the two answers (docs/dp.md).

- the same outcome: both answered, or both refused/failed with the same error class, code and
  charge (the epsilon and delta the plan reserves before reading data);
- answered: the same columns, grouping, cost, mechanisms and threshold; the same released keys in
  public-key and no-grouping mode (in the same order); in partition-selection mode D′ (which only
  adds rows) releases every key of D, and a key only D′ releases has a count within one unit's
  rows of the threshold; values of the same Python type, finite, inside their bounds, and apart by
  no more than one unit can move them plus 20 times the 95% noise half-width (the answers run at a
  huge epsilon, so the noise is close to zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from privacy_data import DATASET, Profile, Registered
from privacy_shapes import Aggregate, Shape

from sandbox.errors import SandboxError
from sandbox.query import Engine, Result
from sandbox.settings import Settings

HUGE_EPSILON = 1e6  # the largest epsilon the engine accepts (sandbox.ranges.MAX_EPSILON)
QUANTILE_CANDIDATES = Settings().quantile_candidates
NOISE_WIDTHS = 20.0  # slack in 95% half-widths: a Laplace draw beyond it has probability < 1e-20


@dataclass(frozen=True)
class Outcome:
    """What an analyst gets for one query on one dataset."""

    error: tuple[str, str] | None  # (error class, code)
    charge: tuple[float, float] | None  # (epsilon, delta) reserved, None when refused at planning
    result: Result | None

    @property
    def answered(self) -> bool:
        """Whether a result came back."""
        return self.result is not None

    def describe(self) -> str:
        """One line for messages."""
        if self.result is None:
            return f"error {self.error} charged {self.charge}"
        return f"{len(self.result.rows)} row(s): {self.result.rows[:6]!r}"


def engine_for(side: Registered) -> Engine:
    """An engine over one side's catalog that accepts a huge epsilon."""
    return Engine(side.catalog, Settings(max_epsilon_per_query=HUGE_EPSILON))


def run(engine: Engine, sql: str, delta: float, epsilon: float = HUGE_EPSILON) -> Outcome:
    """Plan then execute, as the gateway does; the charge is what the plan reserved.

    An error other than a ``SandboxError`` is the gateway's HTTP 500: an outcome too, compared
    like the others (code ``internal``).
    """
    try:
        plan = engine.plan(DATASET, sql, epsilon, delta)
    except Exception as error:
        return Outcome(_error(error), None, None)
    charge = (plan.epsilon_spent, plan.delta_spent)
    try:
        return Outcome(None, charge, engine.execute(plan))
    except Exception as error:
        return Outcome(_error(error), charge, None)


def _error(error: Exception) -> tuple[str, str]:
    code = error.code if isinstance(error, SandboxError) else "internal"
    return type(error).__name__, code


def compare(shape: Shape, profile: Profile, d: Outcome, d_prime: Outcome) -> list[str]:
    """Every way the two outcomes differ beyond what noise and one unit allow (empty: none)."""
    if d.error != d_prime.error or d.charge != d_prime.charge:
        return [f"outcome differs: D {d.describe()} / D′ {d_prime.describe()}"]
    if d.result is None or d_prime.result is None:
        return []
    a, b = d.result, d_prime.result
    problems = [
        f"{name} differs: {x!r} / {y!r}"
        for name, x, y in (
            ("columns", a.columns, b.columns),
            ("grouping", a.grouping, b.grouping),
            ("epsilon", a.epsilon, b.epsilon),
            ("delta", a.delta, b.delta),
            ("dataset", a.dataset, b.dataset),
            ("suppressed_rows", a.suppressed_rows, b.suppressed_rows),
            ("mechanisms", [x.mechanisms for x in a.accuracy], [y.mechanisms for y in b.accuracy]),
            ("meta", a.meta, b.meta),
        )
        if x != y
    ]
    if problems:
        return problems
    width = len(shape.group_by)
    rows_a = {_key(r[:width]): r for r in a.rows}
    rows_b = {_key(r[:width]): r for r in b.rows}
    if len(rows_a) != len(a.rows) or len(rows_b) != len(b.rows):
        problems.append("two released rows have the same key")
    if shape.mode != "threshold":
        if [r[:width] for r in a.rows] != [r[:width] for r in b.rows]:
            problems.append(f"released keys differ: {_keys(a)} / {_keys(b)}")
    else:
        problems.extend(_selection_problems(shape, profile, a, rows_a, rows_b))
    ci_a, ci_b = _ci(a), _ci(b)
    for key in rows_a.keys() & rows_b.keys():
        pair = (rows_a[key], rows_b[key])
        problems.extend(_row_problems(shape, profile, a.columns, pair, (ci_a[key], ci_b[key])))
    return problems


def _key(values: list[Any]) -> tuple[tuple[str, str], ...]:
    """A key that keeps apart values Python would merge (1 and 1.0 and True, dates and strings)."""
    return tuple((type(v).__name__, repr(v)) for v in values)


def _keys(result: Result) -> list[Any]:
    width = len(result.columns) - len(result.accuracy)
    return [r[:width] for r in result.rows][:8]


def _ci(result: Result) -> dict[tuple[tuple[str, str], ...], dict[str, float]]:
    """Per released key, the 95% noise half-width of each aggregate column."""
    width = len(result.columns) - len(result.accuracy)
    cis: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
    for index, row in enumerate(result.rows):
        cis[_key(row[:width])] = {acc.column: acc.ci95[index] or 0.0 for acc in result.accuracy}
    return cis


def _selection_problems(
    shape: Shape,
    profile: Profile,
    a: Result,
    rows_a: dict[Any, list[Any]],
    rows_b: dict[Any, list[Any]],
) -> list[str]:
    """D′ adds rows only, so at a huge epsilon it keeps every key of D; a key it adds is one the
    added unit lifted over the threshold."""
    problems = []
    lost = rows_a.keys() - rows_b.keys()
    if lost:
        problems.append(f"keys released on D but not on D′: {sorted(lost)[:4]}")
    threshold = a.meta.get("threshold") or 0
    count_column = "a" if shape.aggregate.sql == "COUNT(*)" else "r"
    index = a.columns.index(count_column)
    for key in rows_b.keys() - rows_a.keys():
        count = rows_b[key][index]
        if count > threshold + profile.max_rows_per_unit + 1:
            problems.append(f"key {key} appears on D′ only with count {count} (threshold {threshold:.3g})")
    return problems


def _row_problems(
    shape: Shape,
    profile: Profile,
    columns: list[str],
    rows: tuple[list[Any], list[Any]],
    cis: tuple[dict[str, float], dict[str, float]],
) -> list[str]:
    """Types, finiteness, ranges and the move between D and D′ of one key's aggregate values."""
    problems = []
    count = rows[0][columns.index("c")] if "c" in columns else None
    for name in ("a", "c", "r"):
        if name not in columns:
            continue
        x, y = (row[columns.index(name)] for row in rows)
        if type(x) is not type(y):
            problems.append(f"{name}: types differ: {x!r} / {y!r}")
            continue
        if x is None:
            continue
        if not (isinstance(x, int | float) and math.isfinite(x) and math.isfinite(y)):
            problems.append(f"{name}: not a finite number: {x!r} / {y!r}")
            continue
        slack = NOISE_WIDTHS * max(cis[0].get(name, 0.0), cis[1].get(name, 0.0))
        slack += 1e-9 * max(abs(x), abs(y), 1.0)
        aggregate = shape.aggregate if name == "a" else Aggregate("", "count")
        low, high, reach = _allowed(aggregate, profile, count)
        for value in (x, y):
            if not low - slack <= value <= high + slack:
                problems.append(f"{name}: {value!r} outside [{low}, {high}]")
        moved = y - x
        if aggregate.kind in ("count", "units"):
            if not -slack <= moved <= reach + slack:
                problems.append(f"{name}: moved {moved!r} by one unit (allowed 0..{reach}): {x!r} -> {y!r}")
        elif abs(moved) > reach + slack:
            problems.append(f"{name}: moved {moved!r} by one unit (allowed ±{reach:.6g}): {x!r} -> {y!r}")
    return problems


def _allowed(aggregate: Aggregate, profile: Profile, count: Any) -> tuple[float, float, float]:
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
