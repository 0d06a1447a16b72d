"""Conditional aggregates: a row-level condition inside an aggregate, read as ``agg(x) FILTER (WHERE c)``.

Accepted spellings (each is the same aggregate over the rows where ``c`` holds):

- ``COUNT(*) FILTER (WHERE c)``, ``SUM(x) FILTER (WHERE c)``, and FILTER on any accepted aggregate;
- ``COUNT(CASE WHEN c THEN <non-NULL literal> END)``  = ``COUNT(*) FILTER (WHERE c)``;
- ``COUNT(CASE WHEN c THEN x END)``                     = ``COUNT(x) FILTER (WHERE c)``;
- ``agg(CASE WHEN c THEN x [ELSE NULL] END)``          = ``agg(x) FILTER (WHERE c)``;
- ``SUM(CASE WHEN c THEN x ELSE 0 END)``                = ``SUM(x) FILTER (WHERE c)``;
- ``SUM(CASE WHEN c THEN 1 ELSE 0 END)``                = ``COUNT(*) FILTER (WHERE c)``.

A row-level condition does not change what one person can contribute, so the aggregate keeps the
sensitivity of the unconditioned one; each distinct (aggregate, condition) is one more noisy
quantity, and the query's epsilon is split across all of them (plan.py).
"""

from __future__ import annotations

from sqlglot import exp

from sandbox.errors import QueryRejected


def unwrap(node: exp.Expression) -> tuple[exp.Expression, exp.Expression | None]:
    """The plain aggregate and its condition (None when unconditioned), without copying the analyst's
    nodes into generated SQL (the condition is re-checked and rebuilt by the caller)."""
    condition: exp.Expression | None = None
    if isinstance(node, exp.Filter):
        where = node.expression
        if not isinstance(where, exp.Where):
            raise QueryRejected("sql.filter_clause", "FILTER takes (WHERE <condition>).")
        condition = where.this
        node = node.this
    if not isinstance(node, exp.AggFunc) or not isinstance(node.this, exp.Case):
        return node, condition
    plain, case_condition = _case_argument(node, node.this)
    if condition is None:
        return plain, case_condition
    return plain, exp.And(this=exp.Paren(this=condition), expression=exp.Paren(this=case_condition))


def _case_argument(aggregate: exp.Expression, case: exp.Case) -> tuple[exp.Expression, exp.Expression]:
    ifs = case.args.get("ifs") or []
    if case.this is not None or len(ifs) != 1 or not isinstance(ifs[0], exp.If):
        raise _shape()
    condition, outcome = ifs[0].this, ifs[0].args.get("true")
    default = case.args.get("default")
    zero_default = _is_number(default, "0")
    if default is not None and not isinstance(default, exp.Null) and not zero_default:
        raise _shape()
    if zero_default and not isinstance(aggregate, exp.Sum):
        raise _shape()
    rebuilt = aggregate.copy()
    if isinstance(outcome, exp.Column):
        rebuilt.set("this", outcome.copy())
        return rebuilt, condition
    counts_rows = isinstance(aggregate, exp.Count) and isinstance(outcome, exp.Literal | exp.Boolean)
    if counts_rows or (isinstance(aggregate, exp.Sum) and zero_default and _is_number(outcome, "1")):
        return exp.Count(this=exp.Star(), big_int=True), condition
    raise _shape()


def _is_number(node: exp.Expression | None, text: str) -> bool:
    return isinstance(node, exp.Literal) and not node.is_string and node.this == text


def _shape() -> QueryRejected:
    return QueryRejected(
        "sql.conditional_aggregate",
        "A CASE inside an aggregate must be CASE WHEN <condition> THEN <column> END (or THEN 1 "
        "inside COUNT, or ELSE 0 inside SUM); or write <aggregate> FILTER (WHERE <condition>).",
    )
