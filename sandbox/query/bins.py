"""Histogram bins: GROUP BY keys whose set of values is public, derived from the query's constants
and the declared bounds, never from the data.

Three shapes are accepted as GROUP BY keys (each becomes a public-key dimension, so every bin is
released, empty ones too, and no partition selection is needed):

- ``FLOOR(x / w) [* v]`` over a bounded measure ``x``: bins ``[k·w, (k+1)·w)`` for every ``k``
  from ``floor(L / w)`` to ``floor(U / w)``, labelled ``k·v`` (or ``k``);
- ``WIDTH_BUCKET(x, lo, hi, n)`` over a bounded measure (PostgreSQL's definition; DuckDB has no such
  function): bucket 0 below ``lo``, ``1..n`` equal-width within ``[lo, hi)``, ``n + 1`` from ``hi``
  on; the buckets that meet ``[L, U]``;
- a searched ``CASE`` whose outcomes are all literals (``CASE WHEN age < 18 THEN '0-17' WHEN ...
  ELSE '65+' END``): its labels. Rows that match no branch and have no ELSE fall in no bin.

Bins over a measure read the measure's clamped fixed-point value (the bounded data), and edges are
compared as exact integers there: ``x >= e`` is ``clamped >= ceil(e · 10^scale)``. The generated SQL
is a CASE over the clamped integer, which cannot fail for any value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from sqlglot import exp

from sandbox.catalog.models import ColumnRole, ColumnSpec, StoredColumn
from sandbox.errors import QueryRejected
from sandbox.query.scalar import DOUBLE, ScalarChecker, Typed
from sandbox.query.whitelist import Kind

MAX_BINS = 1000
MAX_LABEL = 2**53  # labels stay exact in BIGINT and DOUBLE, so casting a label can never fail

# generated SQL, type category, public labels, DuckDB type the SQL is cast to
Binned = tuple[exp.Expression, Kind, tuple[Any, ...], str]

ColumnLookup = Callable[[exp.Column], tuple[ColumnSpec, StoredColumn]]


def is_bin_shape(expr: exp.Expression) -> bool:
    """Whether ``expr`` has the form of one of the histogram shapes (checked further by ``binned``)."""
    expr = _unparen(expr)
    if isinstance(expr, exp.Mul):
        expr = _unparen(_factors(expr)[0])
    return isinstance(expr, exp.Floor | exp.WidthBucket | exp.Case)


def binned(expr: exp.Expression, lookup: ColumnLookup, checker: ScalarChecker) -> Binned | None:
    """The generated SQL, type and public labels of a histogram key, or None if ``expr`` is none."""
    expr = _unparen(expr)
    if isinstance(expr, exp.Case):
        return _case_bands(expr, checker)
    scale_by: Fraction | None = None
    if isinstance(expr, exp.Mul):
        key, multiplier = _factors(expr)
        scale_by = _constant(multiplier, "the multiplier of FLOOR(x / w) * v")
        expr = _unparen(key)
    if isinstance(expr, exp.Floor):
        return _floor_bins(expr, scale_by, lookup)
    if isinstance(expr, exp.WidthBucket) and scale_by is None:
        return _width_buckets(expr, lookup)
    return None


def _factors(product: exp.Mul) -> tuple[exp.Expression, exp.Expression]:
    """``(key, multiplier)`` of ``key * v`` or ``v * key`` (the key is the non-literal side)."""
    left, right = product.this, product.expression
    return (right, left) if isinstance(_unparen(left), exp.Literal | exp.Neg) else (left, right)


def _floor_bins(node: exp.Floor, scale_by: Fraction | None, lookup: ColumnLookup) -> Binned | None:
    inner = _unparen(node.this)
    if node.args.get("decimals") is not None or not isinstance(inner, exp.Div):
        return None
    column = _unparen(inner.this)
    if not isinstance(column, exp.Column):
        return None
    measure, stored = _bounded_measure(column, lookup)
    if measure is None or stored is None:
        return None
    width = _constant(inner.expression, "the bin width w of FLOOR(x / w)")
    if width <= 0:
        raise QueryRejected("sql.bin_width", "The bin width w of FLOOR(x / w) must be positive.")
    unit = Fraction(10) ** stored.clamped_scale
    lower, upper = Fraction(stored.clamped_lower or 0) / unit, Fraction(stored.clamped_upper or 0) / unit
    first, last = math.floor(lower / width), math.floor(upper / width)
    _check_count(last - first + 1, measure.name)
    multiplier = scale_by if scale_by is not None else Fraction(1)
    if max(abs(first), abs(last)) * abs(multiplier) > MAX_LABEL:
        raise QueryRejected(
            "sql.bin_shape", f"Bin labels of FLOOR(x / w) * v would exceed {MAX_LABEL:.0e}; use a smaller v."
        )
    starts = [(_label(k * multiplier), _edge(k * width, unit)) for k in range(first, last + 1)]
    return _ranges(stored, starts, first_open=True)


def _width_buckets(node: exp.WidthBucket, lookup: ColumnLookup) -> Binned | None:
    column = _unparen(node.this)
    if not isinstance(column, exp.Column):
        raise QueryRejected("sql.bin_shape", "WIDTH_BUCKET takes a measure column as its first argument.")
    measure, stored = _bounded_measure(column, lookup)
    if measure is None or stored is None:
        raise QueryRejected(
            "sql.bin_shape", "WIDTH_BUCKET needs a measure with declared bounds as its first argument."
        )
    lo = _constant(node.args.get("min_value"), "WIDTH_BUCKET's low edge")
    hi = _constant(node.args.get("max_value"), "WIDTH_BUCKET's high edge")
    count = _constant(node.args.get("num_buckets"), "WIDTH_BUCKET's bucket count")
    if count.denominator != 1 or count < 1 or hi <= lo:
        raise QueryRejected(
            "sql.bin_shape", "WIDTH_BUCKET(x, lo, hi, n) needs lo < hi and a positive integer n."
        )
    n = int(count)
    _check_count(n + 2, measure.name)
    unit = Fraction(10) ** stored.clamped_scale
    starts: list[tuple[Any, int]] = [(0, 0)]  # bucket 0: everything below lo
    starts += [(i, _edge(lo + (hi - lo) * (i - 1) / n, unit)) for i in range(1, n + 2)]
    return _ranges(stored, starts, first_open=True)


def _ranges(stored: StoredColumn, starts: list[tuple[Any, int]], *, first_open: bool) -> Binned:
    """``CASE`` over the clamped integer: label ``i`` for ``starts[i] <= c < starts[i+1]`` (the first
    range open below, the last open above); public labels: the ranges that meet the bounds."""
    assert first_open
    clamped = exp.column(stored.clamped or "", quoted=True)
    low, high = stored.clamped_lower or 0, stored.clamped_upper or 0
    floats = any(isinstance(label, float) for label, _ in starts)
    ifs = [exp.If(this=exp.Is(this=clamped.copy(), expression=exp.null()), true=exp.null())]
    labels: list[Any] = []
    for i, (label, _) in enumerate(starts):
        begin = -math.inf if i == 0 else starts[i][1]
        end = starts[i + 1][1] if i + 1 < len(starts) else math.inf
        if begin < end and begin <= high and end > low:
            labels.append(float(label) if floats else label)
        if i + 1 < len(starts):
            ifs.append(
                exp.If(
                    this=exp.LT(this=clamped.copy(), expression=exp.Literal.number(end)),
                    true=_label_sql(label, floats),
                )
            )
    case = exp.Case(ifs=ifs, default=_label_sql(starts[-1][0], floats))
    return (
        _typed(case, "DOUBLE" if floats else "BIGINT"),
        Kind.NUMERIC,
        tuple(labels),
        "DOUBLE" if floats else "BIGINT",
    )


def _case_bands(node: exp.Case, checker: ScalarChecker) -> Binned | None:
    outcomes = [branch.args.get("true") for branch in node.args.get("ifs") or []]
    default = node.args.get("default")
    values = [_literal_value(v) for v in [*outcomes, default] if v is not None]
    if any(v is _NOT_LITERAL for v in values):
        return None
    checked: Typed = checker.check(node)
    labels_in_order = [v for v in values if v is not None]
    if not labels_in_order:
        raise QueryRejected("sql.bin_shape", "A CASE band needs at least one non-NULL label.")
    kinds = {isinstance(v, str) for v in labels_in_order}
    if len(kinds) > 1:
        raise QueryRejected("sql.type_mismatch", "CASE band labels must all be strings or all numbers.")
    floats = any(isinstance(v, float) for v in labels_in_order)
    rebuilt = checked.sql
    assert isinstance(rebuilt, exp.Case)
    ifs = [
        exp.If(this=branch.this, true=_label_sql(_literal_value(original), floats))
        for branch, original in zip(rebuilt.args["ifs"], outcomes, strict=True)
    ]
    case = exp.Case(ifs=ifs)
    if default is not None:
        case.set("default", _label_sql(_literal_value(default), floats))
    unique = list(dict.fromkeys(float(v) if floats else v for v in labels_in_order))
    _check_count(len(unique), "CASE")
    kind = Kind.STRING if isinstance(unique[0], str) else Kind.NUMERIC
    key_type = "VARCHAR" if kind is Kind.STRING else "DOUBLE" if floats else "BIGINT"
    return _typed(case, key_type), kind, tuple(unique), key_type


def _typed(case: exp.Case, key_type: str) -> exp.Expression:
    """The CASE with a fixed result type, so DuckDB's text of a bin equals that of its label."""
    return exp.Cast(this=case, to=exp.DataType.build(key_type))


_NOT_LITERAL = object()


def _literal_value(node: exp.Expression | None) -> Any:
    """A CASE outcome as a Python value (None for NULL), or ``_NOT_LITERAL``."""
    node = _unparen(node) if node is not None else None
    if isinstance(node, exp.Null) or node is None:
        return None
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)
    try:
        number = _constant(node, "a CASE label")
    except QueryRejected:
        return _NOT_LITERAL
    return _label(number)


def _label(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else float(value)


def _label_sql(label: Any, floats: bool) -> exp.Expression:
    if label is None:
        return exp.null()
    if isinstance(label, str):
        return exp.Literal.string(label)
    if floats:
        return exp.Cast(this=exp.Literal.number(repr(float(label))), to=DOUBLE.copy())
    return exp.Literal.number(int(label))


def _edge(value: Fraction, unit: Fraction) -> int:
    """The smallest clamped integer at or above the real edge ``value``."""
    return math.ceil(value * unit)


def _bounded_measure(
    column: exp.Column, lookup: ColumnLookup
) -> tuple[ColumnSpec | None, StoredColumn | None]:
    spec, stored = lookup(column)
    if spec.role is not ColumnRole.MEASURE or stored.clamped is None:
        return None, None
    return spec, stored


def _constant(node: exp.Expression | None, what: str) -> Fraction:
    """The exact value of a numeric literal (optionally negated)."""
    node = _unparen(node) if node is not None else None
    negative = isinstance(node, exp.Neg)
    inner = _unparen(node.this) if negative and node is not None else node
    if isinstance(inner, exp.Literal) and not inner.is_string:
        try:
            value = Fraction(inner.this)
        except (ValueError, ZeroDivisionError):
            pass
        else:
            if abs(value) <= 10**15:
                return -value if negative else value
    raise QueryRejected("sql.bin_shape", f"{what} must be a number literal (at most 1e15).")


def _check_count(bins: int, what: str) -> None:
    if bins > MAX_BINS:
        raise QueryRejected(
            "sql.too_many_bins",
            f"The bins over {what} would be {bins}; the limit is {MAX_BINS}. Use wider bins.",
        )


def _unparen(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node
