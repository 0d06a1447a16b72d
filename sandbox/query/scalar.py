"""Type-check a scalar expression against the whitelist and rebuild it as fresh SQL for DuckDB.

The checker never copies the analyst's nodes: it returns a new sqlglot tree built from whitelisted
node classes, catalog column names and re-validated literals. Numeric operands of arithmetic and of
numeric functions are cast to DOUBLE, so no input value can make DuckDB raise (integer overflow).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from sqlglot import exp

from sandbox.errors import QueryRejected
from sandbox.query import whitelist as wl
from sandbox.query.whitelist import Kind

ColumnResolver = Callable[[exp.Column], "Typed"]
DOUBLE = exp.DataType.build("DOUBLE")
TIMESTAMP_RANGE = ("0001-01-01 00:00:00", "9999-12-31 23:59:59.999999")


@dataclass(frozen=True)
class Typed:
    """A rebuilt expression and its type category."""

    sql: exp.Expression
    kind: Kind
    literal: bool = False


def kind_of_duckdb_type(duckdb_type: str) -> Kind:
    """The type category of a DuckDB column type name."""
    name = duckdb_type.upper()
    if name.startswith(("DECIMAL", "NUMERIC")) or name in {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
        "UHUGEINT",
        "FLOAT",
        "DOUBLE",
        "REAL",
    }:
        return Kind.NUMERIC
    if name in {"VARCHAR", "TEXT", "STRING"}:
        return Kind.STRING
    if name == "DATE":
        return Kind.DATE
    if name == "TIMESTAMP":
        return Kind.TIMESTAMP
    if name == "BOOLEAN":
        return Kind.BOOLEAN
    return Kind.OTHER


class ScalarChecker:
    """Checks and rebuilds scalar expressions; column references go through ``resolve``."""

    def __init__(self, resolve: ColumnResolver, clause: str) -> None:
        self._resolve = resolve
        self._clause = clause

    def check(self, node: exp.Expression) -> Typed:
        """Rebuild ``node`` or raise ``QueryRejected`` naming the construct and the rule."""
        if isinstance(node, exp.Paren):
            inner = self.check(node.this)
            return Typed(exp.Paren(this=inner.sql), inner.kind, inner.literal)
        if isinstance(node, exp.Column):
            return self._resolve(node)
        if isinstance(node, exp.Literal | exp.Boolean | exp.Null):
            return literal(node)
        if isinstance(node, wl.COMPARISONS):
            return self._comparison(node)
        if isinstance(node, wl.BOOLEAN_CONNECTIVES):
            left, right = self._boolean(node.this), self._boolean(node.expression)
            return Typed(type(node)(this=left.sql, expression=right.sql), Kind.BOOLEAN)
        if isinstance(node, exp.Not):
            return Typed(exp.Not(this=self._boolean(node.this).sql), Kind.BOOLEAN)
        if isinstance(node, exp.Between):
            return self._between(node)
        if isinstance(node, exp.In):
            return self._in(node)
        if isinstance(node, exp.Is):
            return self._is(node)
        if isinstance(node, wl.ARITHMETIC):
            self._only_args(node, "this", "expression")
            left, right = self._numeric(node.this), self._numeric(node.expression)
            return Typed(type(node)(this=as_double(left), expression=as_double(right)), Kind.NUMERIC)
        if isinstance(node, exp.Neg):
            return Typed(exp.Neg(this=as_double(self._numeric(node.this))), Kind.NUMERIC)
        if isinstance(node, wl.NUMERIC_FUNCTIONS):
            self._only_args(node, "this")
            return Typed(type(node)(this=as_double(self._numeric(node.this))), Kind.NUMERIC)
        if isinstance(node, exp.Round):
            return self._round(node)
        if isinstance(node, wl.STRING_FUNCTIONS):
            self._only_args(node, "this")
            return Typed(type(node)(this=self._string(node.this).sql), Kind.STRING)
        if isinstance(node, exp.Trim):
            self._only_args(node, "this")
            return Typed(exp.Trim(this=self._string(node.this).sql), Kind.STRING)
        if isinstance(node, wl.STRING_LENGTH):
            self._only_args(node, "this")
            return Typed(exp.Length(this=self._string(node.this).sql), Kind.NUMERIC)
        if isinstance(node, wl.STRING_PREDICATES):
            self._only_args(node, "this", "expression")
            left, right = self._string(node.this), self._string(node.expression)
            return Typed(type(node)(this=left.sql, expression=right.sql), Kind.BOOLEAN)
        if isinstance(node, wl.PATTERN_MATCH):
            self._only_args(node, "this", "expression", "negate")
            left, right = self._string(node.this), self._string(node.expression)
            match = type(node)(this=left.sql, expression=right.sql)
            return Typed(exp.Not(this=match) if node.args.get("negate") else match, Kind.BOOLEAN)
        if isinstance(node, exp.Escape):
            raise QueryRejected("sql.like_escape", "LIKE ... ESCAPE is not allowed; use LIKE without ESCAPE.")
        if isinstance(node, wl.DATE_PARTS):
            self._only_args(node, "this")
            return Typed(type(node)(this=self._temporal(node.this).sql), Kind.NUMERIC)
        if isinstance(node, exp.Extract):
            return self._extract(node)
        if isinstance(node, exp.TimestampTrunc | exp.DateTrunc):
            return self._trunc(node)
        if isinstance(node, exp.Substring):
            return self._substring(node)
        if isinstance(node, exp.Concat | exp.DPipe):
            return self._concat(node)
        if isinstance(node, exp.Coalesce | exp.Greatest | exp.Least):
            return self._variadic(node)
        if isinstance(node, exp.Nullif):
            self._only_args(node, "this", "expression")
            left, right = self.check(node.this), self.check(node.expression)
            kind = self._common_kind(left, right, "NULLIF")
            return Typed(exp.Nullif(this=left.sql, expression=right.sql), kind)
        if isinstance(node, exp.Case):
            return self._case(node)
        if isinstance(node, exp.If):
            return self._if(node)
        if isinstance(node, exp.TryCast):
            return self._try_cast(node)
        if isinstance(node, exp.Cast):
            return self._literal_cast(node)
        raise reject_construct(node, self._clause)

    # -- helpers -----------------------------------------------------------------------------

    def _only_args(self, node: exp.Expression, *allowed: str) -> None:
        extra = [k for k, v in node.args.items() if v not in (None, False, []) and k not in allowed]
        if extra:
            raise QueryRejected(
                "sql.function_not_allowed",
                f"{describe(node)} with the argument(s) {', '.join(sorted(extra))} is not allowed.",
            )

    def _expect(self, node: exp.Expression, kinds: frozenset[Kind], what: str) -> Typed:
        typed = self.check(node)
        if typed.kind not in kinds and typed.kind is not Kind.NULL:
            raise QueryRejected(
                "sql.type_mismatch",
                f"{describe(node)} has type {typed.kind.value}, but {what} is needed here.",
            )
        return typed

    def _numeric(self, node: exp.Expression) -> Typed:
        return self._expect(node, frozenset({Kind.NUMERIC}), "a number")

    def _string(self, node: exp.Expression) -> Typed:
        return self._expect(node, frozenset({Kind.STRING}), "a string")

    def _boolean(self, node: exp.Expression) -> Typed:
        return self._expect(node, frozenset({Kind.BOOLEAN}), "a condition (boolean)")

    def _temporal(self, node: exp.Expression) -> Typed:
        return self._expect(node, wl.TEMPORAL, "a date or timestamp")

    def _comparable(self, left: Typed, right: Typed, what: str) -> tuple[Typed, Typed]:
        """Align two operands for comparison; a string literal against a date becomes a date."""
        if left.kind in wl.TEMPORAL and right.kind is Kind.STRING and right.literal:
            return left, temporal_literal(right, left.kind)
        if right.kind in wl.TEMPORAL and left.kind is Kind.STRING and left.literal:
            return temporal_literal(left, right.kind), right
        self._common_kind(left, right, what)
        return left, right

    def _common_kind(self, left: Typed, right: Typed, what: str) -> Kind:
        kinds = {left.kind, right.kind} - {Kind.NULL}
        if Kind.OTHER in kinds:
            raise QueryRejected("sql.type_mismatch", f"{what} is not defined for columns of this type.")
        if len(kinds) <= 1:
            return kinds.pop() if kinds else Kind.NULL
        if kinds <= wl.TEMPORAL:
            if any(t.kind is Kind.DATE and not t.literal for t in (left, right)):
                raise QueryRejected(
                    "sql.type_mismatch",
                    f"{what} mixes a DATE column with a TIMESTAMP; write TRY_CAST(<column> AS TIMESTAMP) "
                    "(a date far in the past or future has no TIMESTAMP, and the cast would fail).",
                )
            return Kind.TIMESTAMP
        raise QueryRejected(
            "sql.type_mismatch",
            f"{what} compares a {left.kind.value} with a {right.kind.value}; "
            "compare values of the same type (use TRY_CAST to convert).",
        )

    def _comparison(self, node: exp.Expression) -> Typed:
        self._only_args(node, "this", "expression")
        left, right = self._comparable(self.check(node.this), self.check(node.expression), describe(node))
        return Typed(type(node)(this=left.sql, expression=right.sql), Kind.BOOLEAN)

    def _between(self, node: exp.Between) -> Typed:
        self._only_args(node, "this", "low", "high")
        value = self.check(node.this)
        value, low = self._comparable(value, self.check(node.args["low"]), "BETWEEN")
        value, high = self._comparable(value, self.check(node.args["high"]), "BETWEEN")
        return Typed(exp.Between(this=value.sql, low=low.sql, high=high.sql), Kind.BOOLEAN)

    def _in(self, node: exp.In) -> Typed:
        if node.args.get("query") is not None:
            raise QueryRejected("sql.subquery", "IN (SELECT ...) is a subquery and is not allowed.")
        self._only_args(node, "this", "expressions")
        value = self.check(node.this)
        items = []
        for item in node.expressions:
            value, typed = self._comparable(value, self.check(item), "IN")
            items.append(typed.sql)
        return Typed(exp.In(this=value.sql, expressions=items), Kind.BOOLEAN)

    def _is(self, node: exp.Is) -> Typed:
        self._only_args(node, "this", "expression")
        target = node.expression
        if not isinstance(target, exp.Null | exp.Boolean):
            raise QueryRejected("sql.function_not_allowed", "IS is only allowed with NULL, TRUE or FALSE.")
        value = self.check(node.this)
        return Typed(exp.Is(this=value.sql, expression=target.copy()), Kind.BOOLEAN)

    def _round(self, node: exp.Round) -> Typed:
        self._only_args(node, "this", "decimals")
        value = as_double(self._numeric(node.this))
        decimals = node.args.get("decimals")
        if decimals is None:
            return Typed(exp.Round(this=value), Kind.NUMERIC)
        digits = int_literal(decimals, "ROUND's number of digits")
        if not 0 <= digits <= wl.MAX_ROUND_DIGITS:
            raise QueryRejected(
                "sql.function_not_allowed",
                f"ROUND's number of digits must be between 0 and {wl.MAX_ROUND_DIGITS}.",
            )
        return Typed(exp.Round(this=value, decimals=exp.Literal.number(digits)), Kind.NUMERIC)

    def _extract(self, node: exp.Extract) -> Typed:
        self._only_args(node, "this", "expression")
        part = node.this.name.lower() if isinstance(node.this, exp.Var | exp.Literal) else ""
        if part not in wl.EXTRACT_PARTS:
            raise QueryRejected(
                "sql.function_not_allowed",
                f"EXTRACT part must be one of {', '.join(sorted(wl.EXTRACT_PARTS))}.",
            )
        value = self._temporal(node.expression)
        return Typed(exp.Extract(this=exp.var(part.upper()), expression=value.sql), Kind.NUMERIC)

    def _trunc(self, node: exp.Expression) -> Typed:
        self._only_args(node, "this", "unit")
        unit = node.args.get("unit")
        name = unit.name.lower() if isinstance(unit, exp.Var | exp.Literal) else ""
        if name not in wl.TRUNC_UNITS:
            raise QueryRejected(
                "sql.function_not_allowed",
                f"DATE_TRUNC unit must be one of {', '.join(sorted(wl.TRUNC_UNITS))}.",
            )
        value = self._temporal(node.this)
        truncated = exp.TimestampTrunc(this=value.sql, unit=exp.var(name.upper()))
        # DuckDB raises when a far date (or its truncation) leaves the TIMESTAMP range: outside
        # years 1-9999 the result is NULL instead.
        target = "DATE" if value.kind is Kind.DATE else "TIMESTAMP"
        low, high = ("0001-01-01", "9999-12-31") if target == "DATE" else TIMESTAMP_RANGE
        in_range = exp.Between(
            this=value.sql.copy(),
            low=exp.Cast(this=exp.Literal.string(low), to=exp.DataType.build(target)),
            high=exp.Cast(this=exp.Literal.string(high), to=exp.DataType.build(target)),
        )
        return Typed(exp.Case(ifs=[exp.If(this=in_range, true=truncated)]), Kind.TIMESTAMP)

    def _substring(self, node: exp.Substring) -> Typed:
        self._only_args(node, "this", "start", "length")
        value = self._string(node.this)
        start = int_literal(node.args["start"], "SUBSTRING's start") if node.args.get("start") else 1
        args: dict[str, exp.Expression] = {"this": value.sql, "start": exp.Literal.number(start)}
        if node.args.get("length") is not None:
            length = int_literal(node.args["length"], "SUBSTRING's length")
            args["length"] = exp.Literal.number(length)
        return Typed(exp.Substring(**args), Kind.STRING)

    def _concat(self, node: exp.Expression) -> Typed:
        parts = node.expressions if isinstance(node, exp.Concat) else [node.this, node.expression]
        if isinstance(node, exp.Concat):
            self._only_args(node, "expressions", "safe", "coalesce")
        rebuilt = [self._scalar_for_concat(p) for p in parts]
        return Typed(exp.Concat(expressions=rebuilt, safe=True, coalesce=True), Kind.STRING)

    def _scalar_for_concat(self, node: exp.Expression) -> exp.Expression:
        typed = self.check(node)
        if typed.kind is Kind.OTHER:
            raise QueryRejected("sql.type_mismatch", "CONCAT is not defined for this column type.")
        return typed.sql

    def _variadic(self, node: exp.Expression) -> Typed:
        self._only_args(node, "this", "expressions", "ignore_nulls")
        args = [node.this, *node.expressions] if node.this is not None else list(node.expressions)
        typed = [self.check(a) for a in args]
        kind = Kind.NULL
        for item in typed[1:]:
            kind = self._common_kind(typed[0], item, describe(node))
        kind = typed[0].kind if kind is Kind.NULL else kind
        rebuilt = [as_double(t) if kind is Kind.NUMERIC else t.sql for t in typed]
        result = type(node)(this=rebuilt[0], expressions=rebuilt[1:])
        if node.args.get("ignore_nulls"):  # DuckDB's GREATEST/LEAST skip NULLs
            result.set("ignore_nulls", True)
        return Typed(result, kind)

    def _case(self, node: exp.Case) -> Typed:
        self._only_args(node, "ifs", "default")
        if node.this is not None:
            raise QueryRejected(
                "sql.function_not_allowed", "Use the searched form CASE WHEN <condition> THEN ..."
            )
        branches = [self._branch(b) for b in node.args.get("ifs") or []]
        default = node.args.get("default")
        values = [b[1] for b in branches] + ([self.check(default)] if default is not None else [])
        kind = self._uniform_kind(values, "CASE")
        ifs = [
            exp.If(this=cond.sql, true=as_double(val) if kind is Kind.NUMERIC else val.sql)
            for cond, val in branches
        ]
        rebuilt = exp.Case(ifs=ifs)
        if default is not None:
            last = values[-1]
            rebuilt.set("default", as_double(last) if kind is Kind.NUMERIC else last.sql)
        return Typed(rebuilt, kind)

    def _branch(self, node: exp.Expression) -> tuple[Typed, Typed]:
        if not isinstance(node, exp.If):
            raise reject_construct(node, self._clause)
        return self._boolean(node.this), self.check(node.args["true"])

    def _if(self, node: exp.If) -> Typed:
        self._only_args(node, "this", "true", "false")
        cond = self._boolean(node.this)
        values = [self.check(node.args["true"])]
        if node.args.get("false") is not None:
            values.append(self.check(node.args["false"]))
        kind = self._uniform_kind(values, "IF")
        rebuilt = [as_double(v) if kind is Kind.NUMERIC else v.sql for v in values]
        case = exp.Case(ifs=[exp.If(this=cond.sql, true=rebuilt[0])])
        if len(rebuilt) > 1:
            case.set("default", rebuilt[1])
        return Typed(case, kind)

    def _uniform_kind(self, values: list[Typed], what: str) -> Kind:
        kind = Kind.NULL
        for value in values:
            kind = self._common_kind(Typed(exp.null(), kind), value, what)
        return kind

    def _try_cast(self, node: exp.TryCast) -> Typed:
        self._only_args(node, "this", "to", "safe")
        target = node.args["to"]
        kind = wl.CAST_TARGETS.get(target.this) if isinstance(target, exp.DataType) else None
        if kind is None:
            raise QueryRejected(
                "sql.cast_type",
                "TRY_CAST may only target BIGINT, INTEGER, DOUBLE, DECIMAL, VARCHAR, DATE, "
                "TIMESTAMP or BOOLEAN.",
            )
        value = self.check(node.this)
        if value.kind is Kind.OTHER:
            raise QueryRejected("sql.type_mismatch", "TRY_CAST is not defined for this column type.")
        return Typed(exp.TryCast(this=value.sql, to=target.copy()), kind)

    def _literal_cast(self, node: exp.Cast) -> Typed:
        target = node.args.get("to")
        value = node.this
        kind = wl.CAST_TARGETS.get(target.this) if isinstance(target, exp.DataType) else None
        if kind in wl.TEMPORAL and isinstance(value, exp.Literal) and value.is_string:
            return temporal_literal(Typed(value.copy(), Kind.STRING, literal=True), kind)
        raise QueryRejected(
            "sql.cast_not_allowed",
            "CAST can fail on some values and is not allowed; use TRY_CAST, which returns NULL "
            "instead (DATE '...' and TIMESTAMP '...' literals are fine).",
        )


def literal(node: exp.Expression) -> Typed:
    """A fresh copy of a literal, with its type; non-finite or oversized numbers are rejected."""
    if isinstance(node, exp.Null):
        return Typed(exp.null(), Kind.NULL, literal=True)
    if isinstance(node, exp.Boolean):
        return Typed(exp.Boolean(this=bool(node.this)), Kind.BOOLEAN, literal=True)
    assert isinstance(node, exp.Literal)
    if node.is_string:
        return Typed(exp.Literal.string(node.this), Kind.STRING, literal=True)
    text = node.this
    try:
        number = float(text)
    except ValueError:
        raise QueryRejected("sql.invalid_literal", "A numeric literal could not be read.") from None
    if not math.isfinite(number) or abs(number) > 1e300:
        raise QueryRejected("sql.invalid_literal", "Numeric literals must be finite and below 1e300.")
    if text.isdigit():
        return Typed(exp.Literal.number(text), Kind.NUMERIC, literal=True)
    # A decimal literal is a DOUBLE: as DuckDB's DECIMAL(w, s) it would force integer columns into a
    # narrow DECIMAL, and that cast fails on large values.
    return Typed(exp.Cast(this=exp.Literal.number(text), to=DOUBLE.copy()), Kind.NUMERIC, literal=True)


def column_reference(physical: str, duckdb_type: str) -> Typed:
    """A column in a scalar expression; DECIMAL columns are read as DOUBLE (a comparison with an
    integer literal would otherwise cast the literal to the column's DECIMAL(w, s), which fails when
    it has more than w - s digits)."""
    column = exp.column(physical, quoted=True)
    kind = kind_of_duckdb_type(duckdb_type)
    if duckdb_type.upper().startswith(("DECIMAL", "NUMERIC")):
        return Typed(exp.Cast(this=column, to=DOUBLE.copy()), kind)
    return Typed(column, kind)


def temporal_literal(value: Typed, kind: Kind) -> Typed:
    """A string literal checked as an ISO date/timestamp and cast to that type."""
    text = value.sql.name
    try:
        if kind is Kind.DATE:
            date.fromisoformat(text)
        else:
            datetime.fromisoformat(text)
    except ValueError:
        raise QueryRejected(
            "sql.invalid_literal",
            f"'{text[:40]}' is not an ISO {kind.value} (e.g. 2024-03-04 or 2024-03-04 08:30:00).",
        ) from None
    target = exp.DataType.build("DATE" if kind is Kind.DATE else "TIMESTAMP")
    return Typed(exp.Cast(this=exp.Literal.string(text), to=target), kind, literal=True)


def int_literal(node: exp.Expression, what: str) -> int:
    """The value of an integer literal, or a rejection naming ``what``."""
    negative = isinstance(node, exp.Neg)
    inner = node.this if negative else node
    if isinstance(inner, exp.Literal) and not inner.is_string and inner.this.isdigit():
        value = int(inner.this)
        if value < 2**31:
            return -value if negative else value
    raise QueryRejected("sql.function_not_allowed", f"{what} must be an integer literal.")


def as_double(typed: Typed) -> exp.Expression:
    """The expression cast to DOUBLE (numeric literals stay as they are)."""
    if typed.literal or typed.kind is Kind.NULL:
        return typed.sql
    return exp.Cast(this=typed.sql, to=DOUBLE.copy())


def describe(node: exp.Expression) -> str:
    """A short name for a construct, for messages."""
    if isinstance(node, exp.Anonymous):
        return f"function {str(node.this).upper()}()"
    if isinstance(node, exp.Func):
        return f"function {node.sql_name()}()"
    return type(node).__name__.upper()


def reject_construct(node: exp.Expression, clause: str) -> QueryRejected:
    """The rejection for a construct that is not in the whitelist at all."""
    if isinstance(node, exp.Subquery | exp.Select | exp.Exists):
        return QueryRejected("sql.subquery", f"Subqueries are not allowed (found one in {clause}).")
    if isinstance(node, exp.Window):
        return QueryRejected("sql.window_function", "Window functions (OVER ...) are not allowed.")
    if isinstance(node, exp.AggFunc):
        return QueryRejected("sql.aggregate_position", f"Aggregates are not allowed in {clause}; use HAVING.")
    if isinstance(node, exp.Placeholder | exp.Parameter):
        return QueryRejected("sql.parameter", "Query parameters are not supported; inline the value.")
    if isinstance(node, exp.Interval):
        return QueryRejected(
            "sql.function_not_allowed", "INTERVAL arithmetic is not allowed; compare with literals."
        )
    if isinstance(node, exp.Star):
        return QueryRejected("sql.select_star", "* is not allowed: only aggregates are returned.")
    if isinstance(node, exp.Func):
        return QueryRejected(
            "sql.function_not_allowed",
            f"{describe(node)} is not in the list of allowed functions (see docs/sql.md).",
        )
    return QueryRejected("sql.expression_not_allowed", f"{describe(node)} is not allowed in {clause}.")
