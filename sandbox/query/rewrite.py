"""Generate the SQL DuckDB executes, from a plan only (never from the analyst's text).

One statement computes every exact aggregate per group over the stored (bounded, clamped) table;
quantile scores come from one bucket-count statement per quantile.

No generated statement may fail, or behave differently, because of the data. The whitelist admits
total functions only and the catalogue stores one timestamp kind and bounds whose arithmetic cannot
overflow; as a second line, every WHERE conjunct and GROUP BY key that is more than a column
compared with constants runs inside DuckDB's ``TRY``, so a value that would raise makes that row's
condition (or key) NULL instead of failing the statement. Plain comparisons stay bare so DuckDB can
still push them into the scan. Each group carries its identity as DuckDB's own text of the key
(``_t0`` ...), so groups DuckDB keeps apart stay apart after leaving DuckDB.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from sandbox.query import whitelist as wl
from sandbox.query.plan import QUANTILES, PlannedQuantity, Quantity, QueryPlan
from sandbox.query.validate import GroupKey
from sandbox.query.whitelist import Kind


@dataclass(frozen=True)
class ExactColumn:
    """One exact aggregate computed by DuckDB, named in the result set."""

    name: str
    sql: exp.Expression


def exact_columns(plan: QueryPlan) -> list[ExactColumn]:
    """The exact aggregates the plan's quantities are computed from, without duplicates; a
    conditional aggregate's carry its ``FILTER (WHERE ...)`` (guarded as WHERE is)."""
    columns: dict[str, exp.Expression] = {}
    stored = plan.query.stored

    def add(planned: PlannedQuantity, prefix: str, sql: exp.Expression) -> None:
        if planned.filter is not None:
            sql = exp.Filter(this=sql, expression=exp.Where(this=guarded_where(planned.filter)))
        columns[planned.slot(prefix)] = sql

    for planned in plan.quantities:
        if planned.quantity in QUANTILES:
            continue
        if planned.quantity is Quantity.ROWS:
            add(planned, "n", exp.Count(this=exp.Star()))
            continue
        assert planned.column is not None
        column = stored.column(planned.column)
        assert column is not None
        if planned.quantity is Quantity.UNITS:
            raw = exp.column(column.physical, quoted=True)
            add(planned, "u", exp.Count(this=exp.Distinct(expressions=[raw])))
            continue
        if planned.quantity is Quantity.NONNULL and column.clamped is None:  # COUNT(dimension)
            add(planned, "c", exp.Count(this=exp.column(column.physical, quoted=True)))
            continue
        assert column.clamped is not None
        clamped = exp.column(column.clamped, quoted=True)
        if planned.quantity is not Quantity.SUM:
            add(planned, "c", exp.Count(this=clamped.copy()))
        if planned.quantity in (Quantity.SUM, Quantity.CENTERED_SUM, Quantity.CENTERED_SUMSQ):
            add(planned, "s", exp.Sum(this=clamped.copy()))
        if planned.quantity is Quantity.CENTERED_SUMSQ:
            wide = exp.Cast(this=clamped.copy(), to=exp.DataType.build("HUGEINT"))
            add(planned, "q", exp.Sum(this=exp.Mul(this=wide, expression=clamped.copy())))
    return [ExactColumn(name, sql) for name, sql in columns.items()]


PLAIN_PREDICATES: tuple[type[exp.Expression], ...] = (*wl.COMPARISONS, exp.In, exp.Between, exp.Is)
CONSTANTS: tuple[type[exp.Expression], ...] = (exp.Literal, exp.Null, exp.Boolean)


def guarded_where(where: exp.Expr) -> exp.Expr:
    """The WHERE condition with every conjunct that is not a plain comparison inside ``TRY``."""
    conjuncts = list(where.flatten()) if isinstance(where, exp.And) else [where]
    guarded = [
        c.copy() if _plain(c) else exp.Anonymous(this="TRY", expressions=[c.copy()]) for c in conjuncts
    ]
    return exp.and_(*guarded, copy=False) if len(guarded) > 1 else guarded[0]


def guarded_key(key: exp.Expr) -> exp.Expr:
    """A GROUP BY key: a bare column, or a computed expression inside ``TRY``."""
    return key.copy() if isinstance(key, exp.Column) else exp.Anonymous(this="TRY", expressions=[key.copy()])


def _plain(condition: exp.Expr) -> bool:
    """A column compared with constants (whose kinds the validator matched): cannot raise."""
    while isinstance(condition, exp.Paren):
        condition = condition.this
    if not isinstance(condition, PLAIN_PREDICATES):
        return False
    operands = [v for k, v in condition.args.items() if k != "this" and v is not None]
    flat = [o for v in operands for o in (v if isinstance(v, list) else [v])]
    return isinstance(condition.this, exp.Column) and all(_constant(o) for o in flat)


def _constant(node: exp.Expr) -> bool:
    if isinstance(node, exp.Cast):
        return isinstance(node.this, exp.Literal)
    return isinstance(node, CONSTANTS)


def group_columns(plan: QueryPlan) -> list[exp.Expr]:
    """``_g<i>``: each group key; ``_t<i>``: its identity, DuckDB's text of the key."""
    keys = [grouping_key(g) for g in plan.query.group_keys]
    texts = [
        exp.alias_(exp.cast(k.copy(), "VARCHAR", copy=False), f"_t{i}", quoted=True, copy=False)
        for i, k in enumerate(keys)
    ]
    values = [exp.alias_(k, f"_g{i}", quoted=True, copy=False) for i, k in enumerate(keys)]
    return values + texts


FLOAT_TYPES = frozenset({"FLOAT", "DOUBLE", "REAL"})


def grouping_key(group: GroupKey) -> exp.Expr:
    """The expression groups are formed by (and released as).

    A key that may be floating point (a FLOAT/DOUBLE column or bin, or a computed expression) is
    ``CASE WHEN isfinite(k) THEN k + 0 END``: DuckDB puts 0.0 and -0.0 in one group but keeps the
    sign of whichever row it met first (``+ 0`` makes it 0.0), and ±inf and NaN have no JSON value,
    so they group with NULL. Integer, decimal, text and temporal keys are grouped as they are.
    """
    key = guarded_key(group.sql)
    if group.kind is not Kind.NUMERIC or (
        group.key_type is not None and group.key_type.upper() not in FLOAT_TYPES
    ):
        return key
    finite = exp.Anonymous(this="isfinite", expressions=[key.copy()])
    return exp.Case(ifs=[exp.If(this=finite, true=exp.Add(this=key, expression=exp.Literal.number(0)))])


def _grouped(select: exp.Select, plan: QueryPlan, *extra: exp.Expr) -> exp.Select:
    """``select`` with the plan's WHERE and GROUP BY (the key expressions themselves)."""
    query = plan.query
    if query.where is not None:
        select = select.where(guarded_where(query.where), copy=False)
    keys = [grouping_key(g) for g in query.group_keys]
    if keys or extra:
        select = select.group_by(*keys, *extra, copy=False)
    return select


def aggregate_sql(plan: QueryPlan) -> str:
    """SELECT <group keys>, <key identities>, <exact aggregates> FROM <table> [WHERE] [GROUP BY]."""
    select = exp.select(
        *group_columns(plan),
        *[exp.alias_(c.sql, c.name, quoted=True, copy=False) for c in exact_columns(plan)],
        copy=False,
    ).from_(source(plan), copy=False)
    return _generate(_grouped(select, plan))


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
    select = exp.select(
        *group_columns(plan),
        exp.alias_(bucket.copy(), "_b", quoted=True, copy=False),
        exp.alias_(on_grid.copy(), "_on", quoted=True, copy=False),
        exp.alias_(exp.Count(this=exp.Star()), "_n", quoted=True, copy=False),
        copy=False,
    ).from_(source(plan), copy=False)
    select = select.where(
        exp.Not(this=exp.Is(this=exp.column(column.clamped, quoted=True), expression=exp.null())),
        copy=False,
    )
    if planned.filter is not None:  # a conditional quantile: its FILTER, guarded as WHERE is
        select = select.where(guarded_where(planned.filter), copy=False)
    return _generate(_grouped(select, plan, bucket, on_grid))


def _generate(select: exp.Select) -> str:
    """DuckDB's text of a statement built here. Every node of ``select`` is new (built or copied
    from the plan), so the generator may transform it in place instead of copying it first."""
    return select.sql(dialect=wl.DIALECT, copy=False)


def source(plan: QueryPlan) -> exp.Expression:
    """The FROM of the generated statements: the stored table, or the generated join (joins.py)."""
    query = plan.query
    if query.source is not None:
        return query.source.copy()
    return exp.table_(query.stored.physical, quoted=True)


def quantile_step(planned: PlannedQuantity) -> int:
    """Grid step (in stored units) so that the candidates span the bounds."""
    assert planned.bounds is not None
    span = planned.bounds.upper - planned.bounds.lower
    return max(1, -(-span // max(1, planned.candidates - 1)))
