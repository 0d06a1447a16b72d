"""Run one query on D and on D′, and state what may differ between the two answers (docs/dp.md).

- the same outcome: both answered, or both refused/failed with the same error class, code and
  charge (the epsilon and delta the plan reserves before reading data);
- answered: the same columns, grouping, cost, mechanisms and threshold; the same released keys in
  public-key and no-grouping mode (in the same order); in partition-selection mode D′ (which only
  adds rows) releases every key of D, and a key only D′ releases has a count within one unit's
  rows of the threshold; values of the same Python type, finite, inside their bounds, and apart by
  no more than one unit can move them plus 20 times the 95% noise half-width (the answers run at a
  huge epsilon, so the noise is close to zero);
- the same estimate (``Engine.estimate`` reads no data), equal to the plan's charge;
- HAVING, ORDER BY and LIMIT (``privacy_shapes.Post``) run on released values: on group keys they
  keep and order the same keys on D and D′; on noisy values they may keep other keys (that is
  post-processing of noise), but every kept row passes the condition on its released values, the
  rows are in the requested order, LIMIT without HAVING keeps the same number of rows, and a key
  kept on one side only sits within one unit's reach of the HAVING edge;
- ``min_group_size``: suppression reads only noisy counts, so a cell suppressed on one side only
  has a count within one unit's reach of the minimum on the other; the row count is the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import privacy_post
from privacy_data import DATASET, Profile, Registered
from privacy_shapes import HUGE_EPSILON, Aggregate, Shape
from privacy_values import NOISE_WIDTHS, allowed, ci_of, key_of

from sandbox.errors import SandboxError
from sandbox.query import Engine, Result
from sandbox.settings import Settings


@dataclass(frozen=True)
class Outcome:
    """What an analyst gets for one query on one dataset."""

    error: tuple[str, str] | None  # (error class, code)
    charge: tuple[float, float] | None  # (epsilon, delta) reserved, None when refused at planning
    result: Result | None
    estimate: dict[str, Any] | None = None  # Engine.estimate of the same request

    @property
    def answered(self) -> bool:
        """Whether a result came back."""
        return self.result is not None

    def describe(self) -> str:
        """One line for messages."""
        if self.result is None:
            return f"error {self.error} charged {self.charge}"
        return f"{len(self.result.rows)} row(s): {self.result.rows[:6]!r}"


def engine_for(side: Registered, mechanism: str = "laplace") -> Engine:
    """An engine over one side's catalog that accepts a huge epsilon."""
    settings = Settings(max_epsilon_per_query=HUGE_EPSILON, mechanism=mechanism)
    return Engine(side.catalog, settings)


def run(  # noqa: PLR0917 - the request's fields
    engine: Engine,
    sql: str,
    delta: float,
    epsilon: float = HUGE_EPSILON,
    min_group_size: int = 0,
    max_joined_rows_per_unit: int | None = None,
) -> Outcome:
    """Plan then execute, as the gateway does; the charge is what the plan reserved.

    An error other than a ``SandboxError`` is the gateway's HTTP 500: an outcome too, compared
    like the others (code ``internal``).
    """
    options: dict[str, Any] = {
        "min_group_size": min_group_size,
        "max_joined_rows_per_unit": max_joined_rows_per_unit,
    }
    try:
        plan = engine.plan(DATASET, sql, epsilon, delta, **options)
    except Exception as error:
        return Outcome(_error(error), None, None)
    charge = (plan.epsilon_spent, plan.delta_spent)
    estimate = engine.estimate(DATASET, sql, epsilon, delta, **options).to_dict()
    try:
        return Outcome(None, charge, engine.execute(plan), estimate)
    except Exception as error:
        return Outcome(_error(error), charge, None, estimate)


def _error(error: Exception) -> tuple[str, str]:
    code = error.code if isinstance(error, SandboxError) else "internal"
    return type(error).__name__, code


def compare(shape: Shape, profile: Profile, d: Outcome, d_prime: Outcome) -> list[str]:
    """Every way the two outcomes differ beyond what noise and one unit allow (empty: none)."""
    if d.error != d_prime.error or d.charge != d_prime.charge:
        return [f"outcome differs: D {d.describe()} / D′ {d_prime.describe()}"]
    problems = _estimate_problems(d, d_prime)
    if d.result is None or d_prime.result is None:
        return problems
    a, b = d.result, d_prime.result
    problems += [
        f"{name} differs: {x!r} / {y!r}"
        for name, x, y in (
            ("columns", a.columns, b.columns),
            ("grouping", a.grouping, b.grouping),
            ("epsilon", a.epsilon, b.epsilon),
            ("delta", a.delta, b.delta),
            ("dataset", a.dataset, b.dataset),
            ("suppressed_rows", a.suppressed_rows, b.suppressed_rows)
            if not shape.min_group_size  # else compared per key by privacy_post
            else ("", 0, 0),
            ("mechanisms", [x.mechanisms for x in a.accuracy], [y.mechanisms for y in b.accuracy]),
            ("meta", a.meta, b.meta),
        )
        if x != y
    ]
    if problems:
        return problems
    width = len(shape.group_by)
    rows_a = {key_of(r[:width]): r for r in a.rows}
    rows_b = {key_of(r[:width]): r for r in b.rows}
    if len(rows_a) != len(a.rows) or len(rows_b) != len(b.rows):
        problems.append("two released rows have the same key")
    ci_a, ci_b = ci_of(a), ci_of(b)
    for side, result in (("D", a), ("D′", b)):
        problems += [f"{side}: {p}" for p in privacy_post.side_problems(shape, result)]
        problems += [f"{side}: {p}" for p in interval_problems(shape, profile, result)]
    problems += privacy_post.key_problems(shape, profile, (a, b), (rows_a, rows_b), (ci_a, ci_b))
    for key in rows_a.keys() & rows_b.keys():
        pair = (rows_a[key], rows_b[key])
        if shape.min_group_size and privacy_post.suppressed(shape, a.columns, pair):
            continue  # compared by privacy_post.key_problems
        problems.extend(row_problems(shape, profile, a.columns, pair, (ci_a[key], ci_b[key])))
    return problems


def interval_problems(shape: Shape, profile: Profile, result: Result) -> list[str]:
    """A quantile's 95% interval on the value: one per released value (none when it is withheld),
    ordered, within the candidates' range, and covered by the value's ``ci95``."""
    if shape.aggregate.kind != "quantile":
        return []
    accuracy = next((acc for acc in result.accuracy if acc.column == "a"), None)
    if accuracy is None or accuracy.interval95 is None or len(accuracy.interval95) != len(result.rows):
        return ["a quantile without one interval95 per row"]
    low, high, _ = allowed(shape.aggregate, profile, None)
    index = result.columns.index("a")
    problems = []
    for row, interval, ci in zip(result.rows, accuracy.interval95, accuracy.ci95, strict=True):
        value = row[index]
        if (interval is None) != (value is None):
            problems.append(f"interval {interval!r} for the value {value!r}")
        elif interval is not None and value is not None:
            lower, upper = interval
            if not low - 1e-9 <= lower <= upper <= high + 1e-9:
                problems.append(f"interval {interval!r} outside [{low}, {high}] or unordered")
            if ci is None or ci < max(value - lower, upper - value) - 1e-9:
                problems.append(f"ci95 {ci!r} does not cover the interval {interval!r} of {value!r}")
    return problems


def _estimate_problems(d: Outcome, d_prime: Outcome) -> list[str]:
    """The estimate reads no data: the same on D and D′, and it states the plan's charge."""
    if d.estimate != d_prime.estimate:
        return [f"estimate differs: {d.estimate} / {d_prime.estimate}"]
    estimate = d.estimate
    if estimate is not None and (estimate["epsilon"], estimate["delta"]) != d.charge:
        return [f"estimate states ({estimate['epsilon']}, {estimate['delta']}), the plan charges {d.charge}"]
    return []


def row_problems(
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
        low, high, reach = allowed(aggregate, profile, count)
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
