"""Turn exact aggregates into a release: add OpenDP noise, post-process, then apply HAVING,
ORDER BY and LIMIT to noisy values only. Exact values never leave this module.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from sandbox.errors import QueryFailed
from sandbox.query import mechanisms, quantiles
from sandbox.query.accuracy import quantile_bands, quantile_rank_error
from sandbox.query.plan import QUANTILES, Grouping, PlannedQuantity, Quantity, QueryPlan, needed_quantities
from sandbox.query.result import ColumnAccuracy, Result
from sandbox.query.summary import AggregateKind
from sandbox.query.validate import AggregateSpec
from sandbox.query.whitelist import DIALECT

GroupKey = tuple[Any, ...]


@dataclass(frozen=True)
class Exact:
    """Exact aggregates per group, as DuckDB returned them (kept inside the engine)."""

    groups: dict[str, tuple[GroupKey, dict[str, int]]]
    buckets: dict[str, dict[str, list[tuple[int, bool, int]]]]


def key_text(identity: Sequence[str | None]) -> str:
    """The one text of a group: the JSON list of DuckDB's texts of its key values."""
    return json.dumps(list(identity)) if identity else "[]"


def exact_from_rows(
    plan: QueryPlan,
    rows: list[tuple[Any, ...]],
    names: list[str],
    quantile_rows: dict[str, list[tuple[Any, ...]]],
) -> Exact:
    """Index DuckDB's rows by group identity (``_t`` columns, DuckDB's text of each key).

    Two exact groups with one identity would let one group's totals replace another's, so that
    fails closed before any noise is drawn (it cannot happen while DuckDB's text of a value of one
    type is one-to-one).
    """
    width = len(plan.query.group_keys)
    groups: dict[str, tuple[GroupKey, dict[str, int]]] = {}
    for row in rows:
        text = key_text(row[width : 2 * width])
        if text in groups:
            raise _collision()
        values = {name: int(v or 0) for name, v in zip(names, row[2 * width :], strict=True)}
        groups[text] = (tuple(row[:width]), values)
    buckets: dict[str, dict[str, list[tuple[int, bool, int]]]] = {}
    for name, qrows in quantile_rows.items():
        per_group: dict[str, list[tuple[int, bool, int]]] = {}
        for row in qrows:
            b, on_grid, n = row[2 * width :]
            per_group.setdefault(key_text(row[width : 2 * width]), []).append((int(b), bool(on_grid), int(n)))
        buckets[name] = per_group
    return Exact(groups, buckets)


def _collision() -> QueryFailed:
    return QueryFailed(
        "Two groups of this query could not be told apart after leaving the database, so no answer "
        "is released; group by another expression.",
        code="query.group_identity",
    )


def release(plan: QueryPlan, exact: Exact) -> Result:
    """Noisy answer of ``plan`` from ``exact``."""
    keys, key_values, counts_released = _groups(plan, exact)
    noisy: dict[str, list[float]] = {}
    additive: list[tuple[PlannedQuantity, list[int]]] = []
    for planned in plan.quantities:
        if planned.quantity in QUANTILES:
            buckets = exact.buckets.get(quantiles.buckets_key(planned), {})
            noisy[planned.key] = [quantiles.release(planned, buckets.get(k, [])) for k in keys]
        elif planned.quantity is Quantity.ROWS and planned.condition is None and counts_released is not None:
            noisy[planned.key] = [float(counts_released[k]) for k in keys]
        else:
            values = [_exact_value(plan, planned, exact.groups.get(k)) >> planned.shift for k in keys]
            additive.append((planned, values))
    vectors = mechanisms.release_integer_vectors([(p.calibration, values) for p, values in additive])
    for (planned, _), released in zip(additive, vectors, strict=True):
        noisy[planned.key] = [float(v << planned.shift) for v in released]

    aggregates = [_aggregate(plan, spec, noisy, len(keys)) for spec in plan.query.aggregates]
    suppressed = _suppress(plan, noisy, aggregates, len(keys))
    order = _post_order(plan, key_values, aggregates)
    columns, rows, accuracy = _outputs(plan, key_values, aggregates, order)
    return Result(
        columns=columns,
        rows=rows,
        epsilon=plan.epsilon,
        delta=plan.delta_spent,
        accuracy=accuracy,
        dataset=plan.query.record.name,
        dataset_version=plan.query.record.registration_id,
        grouping=plan.grouping.value,
        suppressed_rows=sum(1 for i in order if i in suppressed),
        meta={
            "mechanism_per_quantity": {p.key: p.calibration.public() for p in plan.quantities},
            "threshold": plan.selection.threshold if plan.selection else None,
        },
    )


# -- groups --------------------------------------------------------------------------------------


def _groups(plan: QueryPlan, exact: Exact) -> tuple[list[str], list[GroupKey], dict[str, int] | None]:
    """Output group keys (as text and values) and, for threshold mode, the released counts."""
    if plan.grouping is Grouping.NONE:
        return [key_text(())], [()], None
    if plan.grouping is Grouping.PUBLIC_KEYS:
        return [key_text(i) for i in plan.public_identities], list(plan.public_groups), None
    assert plan.selection is not None
    counts = {text: values.get("n", 0) for text, (_, values) in exact.groups.items()}
    released = mechanisms.release_thresholded(plan.selection, counts)
    try:
        selected = sorted(released, key=lambda t: (_sort_key(exact.groups[t][0]), t))
    except TypeError:  # keys of mixed types in one column: order them by their identity
        selected = sorted(released)
    return selected, [exact.groups[t][0] for t in selected], released


def _sort_key(key: GroupKey) -> tuple[tuple[bool, Any], ...]:
    """Natural order of group keys, NULL last."""
    return tuple((v is None, 0 if v is None else v) for v in key)


# -- exact values and post-processing -------------------------------------------------------------


def _exact_value(
    plan: QueryPlan, planned: PlannedQuantity, group: tuple[GroupKey, dict[str, int]] | None
) -> int:
    values = group[1] if group is not None else {}
    if planned.quantity is Quantity.ROWS:
        return values.get(planned.slot("n"), 0)
    if planned.quantity is Quantity.UNITS:
        return values.get(planned.slot("u"), 0)
    count = values.get(planned.slot("c"), 0)
    if planned.quantity is Quantity.NONNULL:
        return count
    total = values.get(planned.slot("s"), 0)
    if planned.quantity is Quantity.SUM:
        return total
    assert planned.bounds is not None
    shift = planned.bounds.lower + planned.bounds.upper
    if planned.quantity is Quantity.CENTERED_SUM:
        return 2 * total - shift * count
    squares = values.get(planned.slot("q"), 0)
    return 4 * squares - 4 * shift * total + shift * shift * count


@dataclass
class Released:
    """Noisy values and 95% CI half-widths of one aggregate, per group."""

    spec: AggregateSpec
    values: list[float | int | None]
    ci95: list[float | None]
    quantities: list[PlannedQuantity]
    note: str = ""
    rank_error95: float | None = None
    band95: list[list[float] | None] | None = None  # quantiles: levels [q - e, q + e] per group
    interval95: list[list[float] | None] | None = None  # quantiles: [lower, upper] values per group


def _aggregate(plan: QueryPlan, spec: AggregateSpec, noisy: dict[str, list[float]], groups: int) -> Released:
    column = spec.column
    quantities = [plan.planned(q, c, f, spec.condition) for q, c, f in needed_quantities(spec)]
    values_of = [noisy[p.key] for p in quantities]
    if spec.kind in (AggregateKind.COUNT, AggregateKind.COUNT_DISTINCT):
        ci = quantities[0].calibration.ci95()
        return Released(spec, [max(0, int(v)) for v in values_of[0]], [ci] * groups, quantities)
    if spec.kind is AggregateKind.QUANTILE:
        rank = quantile_rank_error(quantities[0])
        intervals: list[list[float] | None] = [
            [min(lo, hi), max(lo, hi)] for lo, hi in zip(values_of[1], values_of[2], strict=True)
        ]
        return Released(
            spec,
            list(values_of[0]),
            [_covering_half_width(v, i) for v, i in zip(values_of[0], intervals, strict=True)],
            quantities,
            f"exponential mechanism over a grid of candidates: 95% interval [lower, upper] from two "
            f"more noisy runs (ci95 is the half-width around the value that covers it); the value's "
            f"rank is within ±{rank:.3g} rows of the best candidate's (docs/dp.md)",
            rank,
            quantile_bands(plan, spec, noisy),
            intervals,
        )
    bounds = plan.bounds(column or "")
    unit = bounds.unit
    if spec.kind is AggregateKind.SUM:
        ci = quantities[0].calibration.ci95()
        return Released(
            spec,
            [_number(v * unit, bounds.scale) for v in values_of[0]],
            [None if ci is None else ci * unit] * groups,
            quantities,
        )
    centered, counts = values_of[0], values_of[-1]
    ci_sum = quantities[0].calibration.ci95() or 0.0
    ci_count = quantities[-1].calibration.ci95() or 0.0
    mid = (bounds.lower + bounds.upper) / 2
    half_range = (bounds.upper - bounds.lower) / 2
    if spec.kind is AggregateKind.AVG:
        values: list[float | int | None] = []
        cis: list[float | None] = []
        for s, n in zip(centered, counts, strict=True):
            size = max(n, 1.0)
            offset = max(-half_range, min(half_range, s / (2 * size)))
            values.append((mid + offset) * unit)
            cis.append((ci_sum / 2 + abs(offset) * ci_count) / size * unit)
        return Released(
            spec, values, cis, quantities, "CI propagated from the noisy sum and count (approximate)"
        )
    squares = values_of[1]
    ci_sq = (quantities[1].calibration.ci95() or 0.0) * 2 ** quantities[1].shift
    values = []
    cis = []
    for s, q, n in zip(centered, squares, counts, strict=True):
        size = max(n, 2.0)
        y1, y2 = s / 2, q / 4
        variance = min(max((y2 - y1 * y1 / size) / (size - 1), 0.0), half_range**2)
        ci_var = (ci_sq / 4 + abs(y1) / size * ci_sum) / (size - 1)
        if spec.kind is AggregateKind.VARIANCE:
            values.append(variance * unit * unit)
            cis.append(ci_var * unit * unit)
        else:
            std = math.sqrt(variance)
            values.append(std * unit)
            cis.append((ci_var / (2 * std) if std > 0 else math.sqrt(ci_var)) * unit)
    return Released(
        spec, values, cis, quantities, "CI propagated from the noisy sums and count (approximate)"
    )


def _covering_half_width(value: float, interval: list[float] | None) -> float | None:
    """The half-width of the interval centred on ``value`` that contains ``interval``."""
    if interval is None:
        return None
    return max(value - interval[0], interval[1] - value)


def _number(value: float, scale: int) -> float | int:
    return round(value) if scale == 0 else round(value, scale)


def _suppress(
    plan: QueryPlan, noisy: dict[str, list[float]], aggregates: list[Released], groups: int
) -> set[int]:
    """Blank the aggregates of groups whose noisy row count is below the minimum group size."""
    if plan.min_group_size <= 0:
        return set()
    counts = noisy[plan.planned(Quantity.ROWS, None).key]
    suppressed = {i for i in range(groups) if counts[i] < plan.min_group_size}
    for released in aggregates:
        for i in suppressed:
            released.values[i] = None
            released.ci95[i] = None
            if released.band95 is not None:
                released.band95[i] = None
            if released.interval95 is not None:
                released.interval95[i] = None
    return suppressed


# -- HAVING, ORDER BY, LIMIT on the released table -----------------------------------------------


def _post_order(plan: QueryPlan, keys: list[GroupKey], aggregates: list[Released]) -> list[int]:
    """Indices of the released rows that pass HAVING, in ORDER BY order, cut at LIMIT."""
    query = plan.query
    indices = list(range(len(keys)))
    if query.having is None and not query.order and query.limit is None:
        return indices
    data: dict[str, list[Any]] = {"_row": indices}
    for i in range(len(query.group_keys)):
        data[f"_g{i}"] = [k[i] for k in keys]
    for i, released in enumerate(aggregates):
        data[f"_a{i}"] = [None if v is None else float(v) for v in released.values]
    table = pa.table({name: _arrow_column(values) for name, values in data.items()})
    select = exp.select(exp.column("_row")).from_("released")
    if query.having is not None:
        select = select.where(query.having.copy())
    if query.order:
        select = select.order_by(*[o.copy() for o in query.order])
    if query.limit is not None:
        select = select.limit(query.limit)
    connection = duckdb.connect(config={"enable_external_access": False})
    try:
        connection.register("released", table)
        return [int(r[0]) for r in connection.execute(select.sql(dialect=DIALECT)).fetchall()]
    finally:
        connection.close()


def _arrow_column(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except OverflowError:  # HUGEINT/UBIGINT keys beyond int64: compare them as DOUBLE
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values])


def _outputs(
    plan: QueryPlan, keys: list[GroupKey], aggregates: list[Released], order: list[int]
) -> tuple[list[str], list[list[Any]], list[ColumnAccuracy]]:
    outputs = plan.query.outputs
    columns = [o.name for o in outputs]
    rows = []
    for i in order:
        row: list[Any] = []
        for output in outputs:
            if output.group is not None:
                row.append(keys[i][output.group])
            else:
                row.append(aggregates[output.aggregate or 0].values[i])
        rows.append(row)
    accuracy = []
    for output in outputs:
        if output.aggregate is None:
            continue
        released = aggregates[output.aggregate]
        accuracy.append(
            ColumnAccuracy(
                column=output.name,
                aggregate=released.spec.key,
                mechanisms=[{"quantity": p.key, **p.calibration.public()} for p in released.quantities],
                ci95=[released.ci95[i] for i in order],
                note=released.note,
                rank_error95=released.rank_error95,
                quantile_band95=None if released.band95 is None else [released.band95[i] for i in order],
                interval95=None if released.interval95 is None else [released.interval95[i] for i in order],
            )
        )
    return columns, rows, accuracy
