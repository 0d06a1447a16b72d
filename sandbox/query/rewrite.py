"""Generate the SQL DuckDB executes, from a plan only (never from the analyst's text).

One statement computes every exact aggregate per group over the stored (bounded, clamped) table;
quantile scores come from one bucket-count statement per quantile.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from sandbox.query.plan import PlannedQuantity, Quantity, QueryPlan


@dataclass(frozen=True)
class ExactColumn:
    """One exact aggregate computed by DuckDB, named in the result set."""

    name: str
    sql: exp.Expression


def exact_columns(plan: QueryPlan) -> list[ExactColumn]:
    """The exact aggregates the plan's quantities are computed from, without duplicates."""
    columns: dict[str, exp.Expression] = {}
    stored = plan.query.stored
    for planned in plan.quantities:
        if planned.quantity is Quantity.QUANTILE:
            continue
        if planned.quantity is Quantity.ROWS:
            columns["n"] = exp.Count(this=exp.Star())
            continue
        assert planned.column is not None
        column = stored.column(planned.column)
        assert column is not None
        if planned.quantity is Quantity.UNITS:
            raw = exp.column(column.physical, quoted=True)
            columns["u"] = exp.Count(this=exp.Distinct(expressions=[raw]))
            continue
        if planned.quantity is Quantity.NONNULL and column.clamped is None:  # COUNT(dimension)
            columns[f"c_{planned.column}"] = exp.Count(this=exp.column(column.physical, quoted=True))
            continue
        assert column.clamped is not None
        clamped = exp.column(column.clamped, quoted=True)
        if planned.quantity is not Quantity.SUM:
            columns[f"c_{planned.column}"] = exp.Count(this=clamped.copy())
        if planned.quantity in (Quantity.SUM, Quantity.CENTERED_SUM, Quantity.CENTERED_SUMSQ):
            columns[f"s_{planned.column}"] = exp.Sum(this=clamped.copy())
        if planned.quantity is Quantity.CENTERED_SUMSQ:
            wide = exp.Cast(this=clamped.copy(), to=exp.DataType.build("HUGEINT"))
            columns[f"q_{planned.column}"] = exp.Sum(this=exp.Mul(this=wide, expression=clamped.copy()))
    return [ExactColumn(name, sql) for name, sql in columns.items()]


def aggregate_sql(plan: QueryPlan) -> str:
    """SELECT <group keys>, <exact aggregates> FROM <table> [WHERE] [GROUP BY]."""
    query = plan.query
    select = exp.select(
        *[exp.alias_(g.sql.copy(), f"_g{i}", quoted=True) for i, g in enumerate(query.group_keys)],
        *[exp.alias_(c.sql, c.name, quoted=True) for c in exact_columns(plan)],
    ).from_(exp.table_(query.stored.physical, quoted=True))
    if query.where is not None:
        select = select.where(query.where.copy())
    if query.group_keys:
        select = select.group_by(*[exp.column(f"_g{i}", quoted=True) for i in range(len(query.group_keys))])
    return select.sql(dialect="duckdb")


def quantile_sql(plan: QueryPlan, planned: PlannedQuantity) -> str:
    """Counts per candidate bucket of a measure: ``(groups..., bucket, on_grid, n)``.

    With candidates ``c_i = L + i * step``, bucket ``b = (x - L) // step`` and ``on_grid = (x - L)
    % step = 0``: then ``#(x < c_i) = #(b < i)`` and ``#(x = c_i) = #(b = i and on_grid)``.
    """
    query = plan.query
    assert planned.column is not None and planned.bounds is not None
    column = query.stored.column(planned.column)
    assert column is not None and column.clamped is not None
    step = quantile_step(planned)
    offset = exp.Paren(
        this=exp.Sub(
            this=exp.column(column.clamped, quoted=True),
            expression=exp.Literal.number(planned.bounds.lower),
        )
    )
    bucket = exp.IntDiv(this=offset.copy(), expression=exp.Literal.number(step))
    on_grid = exp.EQ(
        this=exp.Mod(this=offset.copy(), expression=exp.Literal.number(step)),
        expression=exp.Literal.number(0),
    )
    groups = [exp.alias_(g.sql.copy(), f"_g{i}", quoted=True) for i, g in enumerate(query.group_keys)]
    select = exp.select(
        *groups,
        exp.alias_(bucket, "_b", quoted=True),
        exp.alias_(on_grid, "_on", quoted=True),
        exp.alias_(exp.Count(this=exp.Star()), "_n", quoted=True),
    ).from_(exp.table_(query.stored.physical, quoted=True))
    not_null = exp.Not(this=exp.Is(this=exp.column(column.clamped, quoted=True), expression=exp.null()))
    condition = not_null if query.where is None else exp.and_(query.where.copy(), not_null)
    select = select.where(condition)
    keys = [exp.column(f"_g{i}", quoted=True) for i in range(len(query.group_keys))]
    select = select.group_by(*keys, exp.column("_b", quoted=True), exp.column("_on", quoted=True))
    return select.sql(dialect="duckdb")


def quantile_step(planned: PlannedQuantity) -> int:
    """Grid step (in stored units) so that the candidates span the bounds."""
    assert planned.bounds is not None
    span = planned.bounds.upper - planned.bounds.lower
    return max(1, -(-span // max(1, planned.candidates - 1)))
