"""Validate a parsed SELECT against the whitelist and the catalog: the query's shape, never its data.

The result, ``ValidatedQuery``, holds rebuilt expressions only (see ``scalar.py``): the analyst's
text and nodes never reach DuckDB.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any, cast

from sqlglot import exp

from sandbox.catalog.models import (
    Classification,
    ColumnRole,
    ColumnSpec,
    DatasetRecord,
    StoredColumn,
    StoredTable,
    TableSpec,
)
from sandbox.errors import InvalidRequest, PolicyDenied, QueryRejected
from sandbox.query import bins, conditional, joins
from sandbox.query import whitelist as wl
from sandbox.query.parse import too_deeply_nested
from sandbox.query.scalar import (
    ScalarChecker,
    Typed,
    column_reference,
    describe,
    kind_of_duckdb_type,
    reject_construct,
)
from sandbox.query.summary import AggregateKind
from sandbox.query.whitelist import Kind


@dataclass(frozen=True)
class AggregateSpec:
    """One aggregate of the query, over a declared column (or rows, for COUNT(*))."""

    kind: AggregateKind
    column: str | None
    quantile: float | None = None
    condition: str | None = None  # generated SQL of a FILTER (WHERE ...) condition (conditional.py)
    filter: exp.Expression | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def key(self) -> str:
        """A canonical name, equal for equal aggregates."""
        target = self.column or "*"
        suffix = "" if self.condition is None else f" filter (where {self.condition})"
        if self.kind is AggregateKind.QUANTILE:
            return f"quantile({target}, {self.quantile!r}){suffix}"
        return f"{self.kind.value}({target}){suffix}"


@dataclass(frozen=True)
class GroupKey:
    """One GROUP BY key: rebuilt SQL, output name, public keys when the owner declared them."""

    sql: exp.Expression
    name: str
    kind: Kind
    public_keys: tuple[Any, ...] | None
    key_type: str | None = None  # DuckDB type of the key's SQL, to match public keys by DuckDB's text


@dataclass(frozen=True)
class OutputColumn:
    """One SELECT output: a group key or an aggregate (by index)."""

    name: str
    group: int | None = None
    aggregate: int | None = None


@dataclass(frozen=True)
class ValidatedQuery:
    """A query that passed every rule; expressions are rebuilt and reference physical columns."""

    record: DatasetRecord
    table: TableSpec
    stored: StoredTable
    outputs: tuple[OutputColumn, ...]
    aggregates: tuple[AggregateSpec, ...]
    group_keys: tuple[GroupKey, ...]
    where: exp.Expression | None
    having: exp.Expression | None
    order: tuple[exp.Ordered, ...]
    limit: int | None
    columns_used: frozenset[str]
    normalized_sql: str
    source: exp.Expression | None = None  # the generated FROM of a join (joins.py); None: the table
    requested_bound: int | None = None  # the analyst's max_joined_rows_per_unit (joins.py)

    @property
    def max_rows_per_unit(self) -> int:
        """The contribution bound k (rows per privacy unit) enforced at ingest."""
        assert self.table.max_rows_per_unit is not None
        return self.table.max_rows_per_unit


def validate(
    select: exp.Select, record: DatasetRecord, max_joined_rows_per_unit: int | None = None
) -> ValidatedQuery:
    """Check ``select`` against the whitelist and ``record``'s metadata; rebuild its expressions.
    ``max_joined_rows_per_unit``: the analyst's lower bound on a person's joined rows (joins.py)."""
    try:
        return _Validator(record, max_joined_rows_per_unit).run(select)
    except RecursionError:  # a second line behind the depth limit of parse_select
        raise too_deeply_nested() from None


def result_column(index: int, prefix: str) -> exp.Column:
    """The name of column ``index`` in the released (noisy) table: ``_g0``, ``_a1`` ..."""
    return exp.column(f"_{prefix}{index}", quoted=True)


class _Validator:
    def __init__(self, record: DatasetRecord, max_joined_rows_per_unit: int | None = None) -> None:
        self.record = record
        self.requested_bound = max_joined_rows_per_unit
        self.columns_used: set[str] = set()
        self.aggregates: list[AggregateSpec] = []
        self.join: joins.Relation | None = None

    def run(self, select: exp.Select) -> ValidatedQuery:
        self._check_clauses(select)
        table, stored = self._table(select)
        self.table, self.stored = table, stored
        where = self._where(select)
        group_keys, group_sources = self._group_by(select)
        outputs = self._outputs(select, group_keys, group_sources)
        if not any(o.aggregate is not None for o in outputs):
            raise QueryRejected(
                "sql.no_aggregate",
                "A query must return at least one aggregate (COUNT, SUM, AVG, ...); raw values and "
                "bare group keys are never returned.",
            )
        having = self._having(select, group_keys, group_sources, outputs)
        order = self._order(select, group_keys, group_sources, outputs)
        limit = self._limit(select)
        # no copy: normalize folds identifiers in the output text only, and the generator's in-place
        # rewrites (CONNECT BY, CTEs, generator sequences) concern nothing the whitelist admitted
        normalized = select.sql(dialect=wl.DIALECT, normalize=True, pretty=False, copy=False)
        return ValidatedQuery(
            record=self.record,
            table=table,
            stored=stored,
            outputs=tuple(outputs),
            aggregates=tuple(self.aggregates),
            group_keys=tuple(group_keys),
            where=where,
            having=having,
            order=tuple(order),
            limit=limit,
            columns_used=frozenset(self.columns_used),
            normalized_sql=normalized,
            source=None if self.join is None else self.join.source,
            requested_bound=self.requested_bound,
        )

    # -- statement shape -----------------------------------------------------------------------

    def _check_clauses(self, select: exp.Select) -> None:
        for arg, (code, message) in wl.FORBIDDEN_CLAUSES.items():
            if select.args.get(arg):
                raise QueryRejected(code, message)
        joins.check_targets(select)
        for arg, value in select.args.items():
            if value not in (None, False, []) and arg not in wl.SELECT_ARGS_ALLOWED:
                raise QueryRejected(
                    "sql.statement_not_allowed", f"The clause '{arg}' is not allowed in a query."
                )
        for node in select.walk():
            if isinstance(node, exp.Subquery | exp.Exists) or (
                isinstance(node, exp.Select) and node is not select
            ):
                raise QueryRejected("sql.subquery", "Subqueries are not allowed; query one table.")
            if isinstance(node, exp.Window):
                raise QueryRejected("sql.window_function", "Window functions (OVER) are not allowed.")

    def _table(self, select: exp.Select) -> tuple[TableSpec, StoredTable]:
        source = select.args.get("from_") or select.args.get("from")
        if source is None:
            raise QueryRejected("sql.no_table", "The query needs FROM <table>.")
        table = source.this
        if isinstance(table, exp.Subquery):
            raise QueryRejected("sql.subquery", "Subqueries in FROM are not allowed; query one table.")
        if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
            raise QueryRejected(
                "sql.table_function",
                f"{describe(table.this if isinstance(table, exp.Table) else table)} in FROM is "
                "not allowed; name one table of the dataset.",
            )
        modifiers = sorted(k for k, v in table.args.items() if v and k not in TABLE_ARGS_ALLOWED)
        if "sample" in modifiers:
            raise QueryRejected("sql.sample", "Sampling clauses are not allowed.")
        if modifiers or (table.args.get("alias") and table.args["alias"].columns):
            raise QueryRejected(
                "sql.table_modifier",
                "Table modifiers (time travel, column aliases, hints ...) are not allowed; name one "
                "table of the dataset.",
            )
        name = table.name
        schema = (table.db or "").lower()
        if schema in wl.SYSTEM_SCHEMAS or name.lower().startswith(wl.SYSTEM_CATALOG_PREFIXES):
            raise QueryRejected(
                "sql.system_catalog", "System catalogs are not queryable; use the dataset's tables."
            )
        if schema or table.catalog:
            raise QueryRejected("sql.unknown_table", "Name the table without a schema or database prefix.")
        if self.record.metadata.classification is Classification.CORE:
            raise PolicyDenied(
                "policy.core_dataset",
                f"Dataset '{self.record.name}' is classified core (核心): catalogue entry only, "
                "never queryable.",
            )
        if select.args.get("joins"):
            self.join = joins.relation(select, self.record, table, self.requested_bound)
            self.columns_used |= self.join.on_columns
            return self.join.spec, self.join.stored
        spec = self.record.metadata.table(name)
        stored = self.record.stored_table(name)
        if spec is not None and spec.public:
            raise QueryRejected(
                "sql.join",
                f"Table '{spec.name}' is a public lookup table: join it to a table about persons "
                f"(ON <dimension> = {spec.name}.<join key>).",
            )
        if spec is None or stored is None:
            known = ", ".join(t.name for t in self.record.metadata.tables)
            raise QueryRejected(
                "sql.unknown_table",
                f"Table '{name[:60]}' is not in dataset '{self.record.name}' (tables: {known}).",
            )
        if self.requested_bound is not None:
            raise InvalidRequest(
                "max_joined_rows_per_unit bounds a person's rows in a join; this query reads one "
                "table, whose bound is its max_rows_per_unit. Leave it out.",
                code="request.max_joined_rows_per_unit",
            )
        if spec.max_rows_per_unit is None:
            raise QueryRejected(
                "sql.no_contribution_bound",
                f"Table '{spec.name}' has no contribution bound (max_rows_per_unit) and is not "
                "queryable; ask the data owner to declare one.",
            )
        return spec, stored

    # -- columns -------------------------------------------------------------------------------

    def _column(self, node: exp.Column) -> tuple[ColumnSpec, StoredColumn]:
        if self.join is not None and not isinstance(node.this, exp.Star):
            node = self.join.resolve(node)
        elif node.table and node.table.lower() != self.table.name.lower():
            raise QueryRejected(
                "sql.unknown_column", f"Column '{node.sql()[:60]}' does not refer to this table."
            )
        if isinstance(node.this, exp.Star):
            raise QueryRejected("sql.select_star", "* is not allowed: only aggregates are returned.")
        spec = self._not_an_identifier(node)
        stored = self.stored.column(node.name)
        if spec is None or stored is None:
            raise QueryRejected(
                "sql.unknown_column",
                f"Column '{node.name[:60]}' is not a declared column of table '{self.table.name}'; "
                "undeclared columns are not usable.",
            )
        self.columns_used.add(spec.name if self.join is None else self.join.original(spec.name))
        return spec, stored

    def _not_an_identifier(self, node: exp.Column) -> ColumnSpec | None:
        """The declared column of that name, unless it is an identifier (never stored, never usable)."""
        spec = self.table.column(node.name)
        if spec is not None and spec.role is ColumnRole.IDENTIFIER:
            raise QueryRejected(
                "sql.identifier_column",
                f"Column '{spec.name}' is an identifier and cannot be used in any clause.",
            )
        return spec

    def _scalar_column(self, clause: str, *, allow_unit: bool = False) -> ScalarChecker:
        def resolve(node: exp.Column) -> Typed:
            spec, stored = self._column(node)
            if spec.role is ColumnRole.PRIVACY_UNIT and not allow_unit:
                raise QueryRejected(
                    "sql.privacy_unit_usage",
                    f"The privacy unit '{spec.name}' may only be used as COUNT(DISTINCT {spec.name}).",
                )
            return column_reference(stored.physical, stored.duckdb_type)

        return ScalarChecker(resolve, clause)

    def _bin_checker(self) -> ScalarChecker:
        """Checker of histogram keys (bins.py): a bounded measure reads its clamped value."""

        def resolve(node: exp.Column) -> Typed:
            spec, stored = self._column(node)
            if spec.role is ColumnRole.PRIVACY_UNIT:
                raise QueryRejected(
                    "sql.group_by_privacy_unit",
                    f"Grouping by an expression of the privacy unit '{spec.name}' is not allowed.",
                )
            if spec.role is not ColumnRole.MEASURE or stored.clamped is None:
                return column_reference(stored.physical, stored.duckdb_type)
            clamped = exp.column(stored.clamped, quoted=True)
            if stored.clamped_scale == 0:
                return Typed(clamped, Kind.NUMERIC)
            scaled = exp.Div(
                this=exp.Cast(this=clamped, to=exp.DataType.build("DOUBLE")),
                expression=exp.Literal.number(10**stored.clamped_scale),
            )
            return Typed(exp.Paren(this=scaled), Kind.NUMERIC)

        return ScalarChecker(resolve, "GROUP BY")

    # -- clauses -------------------------------------------------------------------------------

    def _where(self, select: exp.Select) -> exp.Expression | None:
        where = select.args.get("where")
        if where is None:
            return None
        self._no_aggregates(where.this, "WHERE")
        typed = self._scalar_column("WHERE").check(where.this)
        if typed.kind not in (Kind.BOOLEAN, Kind.NULL):
            raise QueryRejected("sql.type_mismatch", "WHERE needs a condition (boolean).")
        return typed.sql

    def _group_by(self, select: exp.Select) -> tuple[list[GroupKey], list[str]]:
        group = select.args.get("group")
        if group is None:
            return [], []
        for arg in ("rollup", "cube", "grouping_sets", "totals"):
            if group.args.get(arg):
                raise QueryRejected("sql.grouping_sets", "ROLLUP, CUBE and GROUPING SETS are not allowed.")
        aliases = {e.alias.lower(): e.this for e in select.expressions if isinstance(e, exp.Alias)}
        keys: list[GroupKey] = []
        sources: list[str] = []
        for item in group.expressions:
            if isinstance(item, exp.Rollup | exp.Cube | exp.GroupingSets):
                raise QueryRejected("sql.grouping_sets", "ROLLUP, CUBE and GROUPING SETS are not allowed.")
            expr = self._resolve_reference(item, select, aliases)
            self._no_aggregates(expr, "GROUP BY")
            keys.append(self._group_key(expr, len(keys)))
            sources.append(_canonical(expr))
        return keys, sources

    def _resolve_reference(
        self, item: exp.Expression, select: exp.Select, aliases: dict[str, exp.Expression]
    ) -> exp.Expression:
        """GROUP BY/ORDER BY items may name a SELECT alias or position."""
        if isinstance(item, exp.Literal) and not item.is_string and item.this.isdigit():
            position = int(item.this)
            if not 1 <= position <= len(select.expressions):
                raise QueryRejected(
                    "sql.unknown_column", f"Position {position} is not a column of the SELECT list."
                )
            target: exp.Expression = select.expressions[position - 1]
            return target.this if isinstance(target, exp.Alias) else target
        if (
            isinstance(item, exp.Column)
            and not item.table
            and item.name.lower() in aliases
            and self.table.column(item.name) is None
        ):
            return aliases[item.name.lower()]
        return item

    def _group_key(self, expr: exp.Expression, index: int) -> GroupKey:
        if isinstance(expr, exp.Column):
            spec, stored = self._column(expr)
            if spec.role is ColumnRole.PRIVACY_UNIT:
                raise QueryRejected(
                    "sql.group_by_privacy_unit",
                    f"Grouping by the privacy unit '{spec.name}' would release per-person values.",
                )
            _not_a_measure(spec)
            keys = tuple(spec.keys) if spec.role is ColumnRole.DIMENSION and spec.keys else None
            kind = kind_of_duckdb_type(stored.duckdb_type)
            if kind is Kind.OTHER:
                raise QueryRejected(
                    "sql.type_mismatch", f"Column '{spec.name}' has a type that cannot be grouped."
                )
            return GroupKey(
                exp.column(stored.physical, quoted=True), spec.name, kind, keys, stored.duckdb_type
            )
        if bins.is_bin_shape(expr):
            found = bins.binned(expr, self._column, self._bin_checker())
            if found is not None:
                sql, kind, labels, key_type = found
                return GroupKey(sql, f"group_{index}", kind, labels, key_type)
        for column in expr.find_all(exp.Column):
            spec, _ = self._column(column)
            if spec.role is ColumnRole.PRIVACY_UNIT:
                raise QueryRejected(
                    "sql.group_by_privacy_unit",
                    f"Grouping by an expression of the privacy unit '{spec.name}' is not allowed.",
                )
            _not_a_measure(spec)
        typed = self._scalar_column("GROUP BY").check(expr)
        return GroupKey(typed.sql, f"group_{index}", typed.kind, None)

    def _outputs(
        self, select: exp.Select, group_keys: list[GroupKey], sources: list[str]
    ) -> list[OutputColumn]:
        outputs: list[OutputColumn] = []
        names: set[str] = set()
        for item in select.expressions:
            expr = item.this if isinstance(item, exp.Alias) else item
            while isinstance(expr, exp.Paren):  # (SUM(x)) is SUM(x)
                expr = expr.this
            if isinstance(expr, exp.Star):
                raise QueryRejected(
                    "sql.select_star", "SELECT * returns raw rows; select aggregates instead."
                )
            name = item.alias if isinstance(item, exp.Alias) else _output_name(expr)
            if name.lower() in names:
                raise QueryRejected(
                    "sql.duplicate_output", f"Two outputs are named '{name[:60]}'; use AS to rename."
                )
            names.add(name.lower())
            canonical = _canonical(expr)
            if canonical in sources:
                index = sources.index(canonical)
                outputs.append(OutputColumn(name=name, group=index))
                if group_keys[index].name.startswith("group_"):
                    group_keys[index] = replace(group_keys[index], name=name)
                continue
            if isinstance(expr, exp.AggFunc | exp.Filter) or _is_aggregate_call(expr):
                outputs.append(OutputColumn(name=name, aggregate=self._aggregate(expr)))
                continue
            forbidden = next(expr.find_all(*wl.RAW_VALUE_AGGREGATES), None)
            if forbidden is not None:
                self._aggregate_spec(forbidden)  # raises sql.forbidden_aggregate, e.g. ANY_VALUE
            if any(True for _ in expr.find_all(exp.AggFunc)):
                raise QueryRejected(
                    "sql.aggregate_expression",
                    f"{describe(expr)} around an aggregate is not allowed in SELECT; select the "
                    "aggregate itself (post-process the noisy value in your notebook).",
                )
            if isinstance(expr, exp.Column):
                self._column(expr)  # an identifier or unknown column is reported as such first
                raise QueryRejected(
                    "sql.raw_column_output",
                    f"Column '{expr.name[:60]}' would be returned row by row; group by it or aggregate it.",
                )
            if isinstance(expr, exp.Literal | exp.Boolean | exp.Null):
                raise QueryRejected(
                    "sql.literal_output", "Constant outputs are not allowed; select aggregates."
                )
            raise QueryRejected(
                "sql.raw_column_output",
                f"{describe(expr)} is neither an aggregate nor a GROUP BY key.",
            )
        return outputs

    # -- aggregates ----------------------------------------------------------------------------

    def _aggregate(self, node: exp.Expression) -> int:
        spec = self._aggregate_spec(node)
        for index, existing in enumerate(self.aggregates):
            if existing == spec:
                return index
        self.aggregates.append(spec)
        return len(self.aggregates) - 1

    def _aggregate_spec(self, node: exp.Expression) -> AggregateSpec:
        plain, condition = conditional.unwrap(node)
        spec = self._plain_aggregate_spec(plain)
        if condition is None:
            return spec
        self._no_aggregates(condition, "FILTER")
        typed = self._scalar_column("FILTER").check(condition)
        if typed.kind not in (Kind.BOOLEAN, Kind.NULL):
            raise QueryRejected("sql.type_mismatch", "FILTER (WHERE ...) needs a condition (boolean).")
        return replace(spec, condition=typed.sql.sql(dialect=wl.DIALECT), filter=typed.sql)

    def _plain_aggregate_spec(self, node: exp.Expression) -> AggregateSpec:
        if isinstance(node, wl.RAW_VALUE_AGGREGATES):
            raise QueryRejected(
                "sql.forbidden_aggregate",
                f"{describe(node)} would reveal individual values or lists and is not allowed; "
                "use COUNT, SUM, AVG, VARIANCE, STDDEV, MEDIAN or QUANTILE_CONT.",
            )
        if isinstance(node, exp.Anonymous) or not isinstance(node, wl.ACCEPTED_AGGREGATES):
            raise QueryRejected(
                "sql.forbidden_aggregate",
                f"{describe(node)} is not an allowed aggregate; use COUNT, SUM, AVG, VARIANCE, "
                "STDDEV, MEDIAN or QUANTILE_CONT.",
            )
        for inner in node.find_all(exp.AggFunc):
            if id(inner) != id(node):
                raise QueryRejected("sql.nested_aggregate", "Aggregates cannot be nested.")
        if isinstance(node, wl.COUNT_NODES):
            return self._count(node)
        if isinstance(node, wl.QUANTILE_NODES):
            return self._quantile(node)
        kind = (
            AggregateKind.SUM
            if isinstance(node, wl.SUM_NODES)
            else AggregateKind.AVG
            if isinstance(node, wl.AVG_NODES)
            else AggregateKind.VARIANCE
            if isinstance(node, wl.VARIANCE_NODES)
            else AggregateKind.STDDEV
        )
        self._only_this(node)
        return AggregateSpec(kind, self._measure(node.this, kind.value.upper(), needs_bounds=True))

    def _only_this(self, node: exp.Expression, *extra: str) -> None:
        allowed = {"this", "big_int", *extra}
        for key, value in node.args.items():
            if value not in (None, False, []) and key not in allowed:
                raise QueryRejected(
                    "sql.aggregate_argument",
                    f"{describe(node)} takes one column; extra arguments are not allowed.",
                )

    def _count(self, node: exp.Expression) -> AggregateSpec:
        self._only_this(node)
        target = node.this
        if isinstance(target, exp.Star) or target is None:
            return AggregateSpec(AggregateKind.COUNT, None)
        if isinstance(target, exp.Distinct):
            columns = target.expressions
            if len(columns) != 1 or not isinstance(columns[0], exp.Column):
                raise QueryRejected(
                    "sql.count_distinct",
                    "COUNT(DISTINCT ...) is only allowed on the privacy unit column.",
                )
            spec, _ = self._column(columns[0])
            if spec.role is not ColumnRole.PRIVACY_UNIT:
                raise QueryRejected(
                    "sql.count_distinct",
                    f"COUNT(DISTINCT {spec.name}) is not allowed; only COUNT(DISTINCT "
                    f"{self.table.privacy_unit or '<privacy unit>'}) counts persons.",
                )
            return AggregateSpec(AggregateKind.COUNT_DISTINCT, spec.name)
        if not isinstance(target, exp.Column):
            raise QueryRejected(
                "sql.aggregate_argument",
                "COUNT takes *, a column, or DISTINCT <privacy unit>; expressions are not allowed.",
            )
        spec, _ = self._column(target)
        if spec.role is ColumnRole.PRIVACY_UNIT:
            return AggregateSpec(AggregateKind.COUNT, None)
        return AggregateSpec(AggregateKind.COUNT, spec.name)

    def _quantile(self, node: exp.Expression) -> AggregateSpec:
        if isinstance(node, exp.Median):
            self._only_this(node)
            q = 0.5
        else:
            extra = "quantile" if isinstance(node, exp.Quantile) else "expression"
            self._only_this(node, extra)
            q = _quantile_literal(node.args.get(extra))
        column = self._measure(node.this, "QUANTILE", needs_bounds=True)
        return AggregateSpec(AggregateKind.QUANTILE, column, q)

    def _measure(self, node: exp.Expression | None, what: str, *, needs_bounds: bool) -> str:
        if isinstance(node, exp.Distinct):
            raise QueryRejected("sql.aggregate_argument", f"{what}(DISTINCT ...) is not allowed.")
        if not isinstance(node, exp.Column):
            raise QueryRejected(
                "sql.aggregate_argument",
                f"{what} takes a measure column; expressions inside aggregates are not allowed.",
            )
        spec, stored = self._column(node)
        if spec.role is not ColumnRole.MEASURE:
            raise QueryRejected(
                "sql.aggregate_non_measure",
                f"{what}({spec.name}) is not allowed: '{spec.name}' is a {spec.role.value}, not a measure.",
            )
        if needs_bounds and (spec.lower is None or spec.upper is None or stored.clamped is None):
            raise QueryRejected(
                "sql.measure_without_bounds",
                f"Measure '{spec.name}' has no declared bounds, so it cannot be aggregated; ask the "
                "data owner to declare lower and upper.",
            )
        return spec.name

    # -- post-release clauses ------------------------------------------------------------------

    def _post_expression(
        self,
        node: exp.Expression,
        clause: str,
        group_keys: list[GroupKey],
        sources: list[str],
        outputs: list[OutputColumn],
    ) -> Typed:
        """Rebuild a HAVING/ORDER BY expression over the released table: it may use group keys,
        output names and aggregates (which become released columns), nothing else."""
        replaced: exp.Expression = exp.Paren(this=node.copy())  # a parent, so the root can be replaced
        placeholders: dict[int, int] = {}
        for agg in list(replaced.find_all(exp.Filter, exp.AggFunc)):
            if isinstance(agg.parent, exp.Filter):  # replaced with its FILTER
                continue
            placeholder = exp.column("aggregate")
            placeholders[id(placeholder)] = self._aggregate(cast(exp.Expression, agg))
            agg.replace(placeholder)
        for anonymous in list(replaced.find_all(exp.Anonymous)):
            if _is_aggregate_call(anonymous):
                self._aggregate(anonymous)
        by_name = {o.name.lower(): o for o in outputs}

        def resolve(column: exp.Column) -> Typed:
            if id(column) in placeholders:
                return Typed(result_column(placeholders[id(column)], "a"), Kind.NUMERIC)
            canonical = _canonical(column)
            if canonical in sources:
                index = sources.index(canonical)
                return Typed(result_column(index, "g"), group_keys[index].kind)
            output = by_name.get(column.name.lower()) if not column.table else None
            if output is not None and output.group is not None:
                return Typed(result_column(output.group, "g"), group_keys[output.group].kind)
            if output is not None:
                return Typed(result_column(output.aggregate or 0, "a"), Kind.NUMERIC)
            self._not_an_identifier(column)
            raise QueryRejected(
                "sql.raw_column_output",
                f"{clause} may only use GROUP BY keys, output names and aggregates; "
                f"'{column.name[:60]}' is none of these.",
            )

        return ScalarChecker(resolve, clause).check(replaced)

    def _having(
        self,
        select: exp.Select,
        group_keys: list[GroupKey],
        sources: list[str],
        outputs: list[OutputColumn],
    ) -> exp.Expression | None:
        having = select.args.get("having")
        if having is None:
            return None
        typed = self._post_expression(having.this, "HAVING", group_keys, sources, outputs)
        if typed.kind not in (Kind.BOOLEAN, Kind.NULL):
            raise QueryRejected("sql.type_mismatch", "HAVING needs a condition (boolean).")
        return typed.sql

    def _order(
        self,
        select: exp.Select,
        group_keys: list[GroupKey],
        sources: list[str],
        outputs: list[OutputColumn],
    ) -> list[exp.Ordered]:
        order = select.args.get("order")
        if order is None:
            return []
        result = []
        for item in order.expressions:
            target = item.this if isinstance(item, exp.Ordered) else item
            if isinstance(target, exp.Literal) and not target.is_string and target.this.isdigit():
                position = int(target.this)
                if not 1 <= position <= len(outputs):
                    raise QueryRejected(
                        "sql.unknown_column", f"ORDER BY {position} is not a column of the SELECT."
                    )
                output = outputs[position - 1]
                sql: exp.Expression = (
                    result_column(output.group, "g")
                    if output.group is not None
                    else result_column(output.aggregate or 0, "a")
                )
            else:
                sql = self._post_expression(target, "ORDER BY", group_keys, sources, outputs).sql
            desc = bool(item.args.get("desc")) if isinstance(item, exp.Ordered) else False
            result.append(exp.Ordered(this=sql, desc=desc, nulls_first=not desc))
        return result

    def _limit(self, select: exp.Select) -> int | None:
        limit = select.args.get("limit")
        if limit is None:
            return None
        value = limit.expression
        if not (isinstance(value, exp.Literal) and not value.is_string and value.this.isdigit()):
            raise QueryRejected("sql.limit", "LIMIT takes a non-negative integer literal.")
        options = limit.args.get("limit_options")
        if options is not None and any(options.args.values()):
            raise QueryRejected("sql.limit", "LIMIT takes a row count only (no PERCENT or WITH TIES).")
        if int(value.this) > MAX_LIMIT:
            raise QueryRejected("sql.limit", f"LIMIT must be at most {MAX_LIMIT}.")
        return int(value.this)

    def _no_aggregates(self, node: exp.Expression, clause: str) -> None:
        for inner in node.walk():
            if isinstance(inner, exp.AggFunc) or _is_aggregate_call(cast(exp.Expression, inner)):
                raise reject_construct(exp.Sum(this=exp.null()), clause)


TABLE_ARGS_ALLOWED = frozenset({"this", "db", "catalog", "alias"})
MAX_LIMIT = 2**31 - 1

AGGREGATE_FUNCTION_NAMES = frozenset(
    {
        "string_agg",
        "list",
        "array_agg",
        "histogram",
        "arg_max",
        "arg_min",
        "bit_and",
        "bit_or",
        "bool_and",
        "bool_or",
        "entropy",
        "kurtosis",
        "skewness",
        "mad",
        "mode",
        "product",
        "fsum",
        "favg",
        "sumkahan",
        "bitstring_agg",
        "approx_count_distinct",
        "reservoir_quantile",
        "approx_quantile",
        "quantile_disc",
        "list_agg",
        "max_by",
        "min_by",
        "arbitrary",
        "first",
        "last",
        "any_value",
        "min",
        "max",
        "count_if",
        "corr",
        "covar_pop",
        "covar_samp",
        "regr_slope",
        "regr_intercept",
        "var_pop",
        "stddev_pop",
        "median",
        "quantile_cont",
    }
)


def _not_a_measure(spec: ColumnSpec) -> None:
    """Group keys are dimensions: a measure is aggregated, never grouped by."""
    if spec.role is ColumnRole.MEASURE:
        raise QueryRejected(
            "sql.group_by_measure",
            f"'{spec.name}' is a measure; GROUP BY takes dimension columns only (aggregate the "
            "measure, or filter on it in WHERE).",
        )


def _is_aggregate_call(node: exp.Expression) -> bool:
    return isinstance(node, exp.Anonymous) and str(node.this).lower() in AGGREGATE_FUNCTION_NAMES


def _canonical(node: exp.Expression) -> str:
    """A comparable text of an expression; outer parentheses do not count."""
    while isinstance(node, exp.Paren):
        node = node.this
    # lower() already folds identifiers as normalize=True would; without a copy of the tree (the
    # generator's only in-place rewrites are of subqueries, arrays and pivots, which get one)
    copy = node.find(exp.Select, exp.Array, exp.Pivot) is not None
    return node.sql(dialect=wl.DIALECT, copy=copy).lower()


def _output_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Column):
        return node.name
    return node.sql(dialect=wl.DIALECT)


def _quantile_literal(node: exp.Expression | None) -> float:
    if isinstance(node, exp.Literal) and not node.is_string:
        value = float(node.this)
        if 0.0 < value < 1.0:
            return value
    raise QueryRejected(
        "sql.quantile_argument", "The quantile must be a number literal strictly between 0 and 1."
    )


def fingerprint(*parts: str) -> str:
    """SHA-256 of the parts, joined unambiguously."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()
