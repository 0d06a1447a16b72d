"""Joins: tables of one dataset joined on the privacy unit, and public lookup tables joined many-to-one.

A join is validated into one *virtual table* that the rest of the engine treats like any table:

- **Private ⋈ private on the unit** (``residents r JOIN medical_visits v ON r.person_id =
  v.person_id``, INNER or LEFT): a person with at most ``k₁`` rows in one table and ``k₂`` in the
  other has at most ``k₁ · k₂`` joined rows (a LEFT join keeps an unmatched row once, and
  ``k₁ · max(k₂, 1) = k₁ · k₂``), so the virtual table's contribution bound is the product.
- **Private ⋈ public lookup** (``JOIN districts d ON r.district_code = d.code``, INNER or LEFT): the
  lookup table is declared ``public: true`` with ``join_keys``, each checked unique and non-NULL at
  registration, so each private row matches at most one lookup row and the bound is unchanged. Its
  columns are dimensions whose public keys are the table's own (public) values.

Anything else (RIGHT/FULL/CROSS/NATURAL joins, conditions other than one equality, a private table
joined on anything but the unit, a public table first) is rejected with ``sql.join``.

The virtual table's rows come from a subquery generated here (never from the analyst's text): each
table gets an alias ``j0, j1, ...`` and each stored column a unique name ``j<i>__<physical>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from sqlglot import exp

from sandbox.catalog.models import (
    ColumnRole,
    ColumnSpec,
    DatasetRecord,
    StoredColumn,
    StoredTable,
    TableSpec,
)
from sandbox.errors import InvalidRequest, QueryRejected
from sandbox.query.scalar import kind_of_duckdb_type

MAX_JOINS = 3
JOIN_SIDES = frozenset({"", "LEFT"})
JOIN_KINDS = frozenset({"", "INNER", "OUTER"})  # LEFT OUTER JOIN is LEFT


@dataclass(frozen=True)
class Joined:
    """One table of the join, as the analyst named it."""

    index: int
    alias: str
    spec: TableSpec
    stored: StoredTable


@dataclass(frozen=True)
class Relation:
    """The joined tables as one virtual table, and how analyst column names map onto it."""

    spec: TableSpec
    stored: StoredTable
    source: exp.Expression
    tables: tuple[Joined, ...]
    names: dict[tuple[int, str], str]  # (table index, column lower) -> virtual column name
    originals: dict[str, str]  # virtual column name -> declared column name
    on_columns: frozenset[str]  # declared names of the columns the joins compare (a policy grants them)

    def resolve(self, node: exp.Column) -> exp.Column:
        """The virtual column an analyst's (qualified or unqualified) column reference names."""
        name = node.name.lower()
        if node.table:
            table = next((t for t in self.tables if t.alias == node.table.lower()), None)
            if table is None:
                raise QueryRejected(
                    "sql.unknown_column",
                    f"'{node.table[:60]}' is not a table (or alias) of the FROM clause.",
                )
            found = self.names.get((table.index, name))
            return exp.column(found or node.name)
        matches = [v for (i, n), v in self.names.items() if n == name]
        if len(matches) > 1:
            unit = self.spec.column(self.spec.privacy_unit or "")
            if unit is not None and any(v == unit.name for v in matches):  # equal under the join
                return exp.column(unit.name)
            raise QueryRejected(
                "sql.ambiguous_column",
                f"Column '{node.name[:60]}' is in several joined tables; qualify it (alias.column).",
            )
        return exp.column(matches[0] if matches else node.name)

    def original(self, virtual: str) -> str:
        """The declared name of a virtual column (for policies and messages)."""
        return self.originals.get(virtual, virtual)


def check_targets(select: exp.Select) -> None:
    """Each JOIN names a table (not a LATERAL, subquery or function), checked before anything else."""
    for join in select.args.get("joins") or []:
        if not isinstance(join, exp.Join) or not isinstance(join.this, exp.Table):
            raise QueryRejected(
                "sql.join", "Only JOIN <table> ON ... of the dataset's tables is allowed (no LATERAL)."
            )


def relation(
    select: exp.Select, record: DatasetRecord, first: exp.Table, requested: int | None = None
) -> Relation:
    """Validate the FROM clause's joins and build the virtual table; ``requested`` is the analyst's
    ``max_joined_rows_per_unit`` for this query (None: the owner's, or the product of the bounds)."""
    joins = select.args.get("joins") or []
    if len(joins) > MAX_JOINS:
        raise QueryRejected("sql.join", f"At most {MAX_JOINS} joins per query.")
    tables = [_table(first, 0, record)]
    if tables[0].spec.public:
        raise QueryRejected(
            "sql.join", "Start FROM with a table about persons; public lookup tables are joined to it."
        )
    conditions: list[tuple[str, exp.Expression, frozenset[str]]] = []
    for join in joins:
        if not isinstance(join, exp.Join) or not isinstance(join.this, exp.Table):
            raise QueryRejected("sql.join", "Only JOIN <table> ON ... of the dataset's tables is allowed.")
        side, kind = (join.side or "").upper(), (join.kind or "").upper()
        if side not in JOIN_SIDES or kind not in JOIN_KINDS or join.args.get("method"):
            raise QueryRejected(
                "sql.join",
                f"{' '.join(p for p in (join.args.get('method'), side, kind) if p) or 'This'} JOIN is not "
                "allowed; use JOIN (inner) or LEFT JOIN.",
            )
        table = _table(join.this, len(tables), record)
        if any(t.alias == table.alias for t in tables):
            raise QueryRejected(
                "sql.join", f"'{table.alias}' names two tables of the join; alias one of them."
            )
        tables.append(table)
        condition, compared = _condition(join, tables)
        conditions.append((side, condition, compared))
    return _build(tables, conditions, record.metadata.max_joined_rows_per_unit, requested)


def _table(node: exp.Table, index: int, record: DatasetRecord) -> Joined:
    if not isinstance(node.this, exp.Identifier) or node.db or node.catalog:
        raise QueryRejected("sql.join", "Join tables of the dataset by name (no schema, no functions).")
    extra = sorted(k for k, v in node.args.items() if v and k not in ("this", "alias"))
    alias = node.args.get("alias")
    if extra or (alias is not None and alias.columns):
        raise QueryRejected("sql.table_modifier", "Table modifiers are not allowed on joined tables.")
    spec, stored = record.metadata.table(node.name), record.stored_table(node.name)
    if spec is None or stored is None:
        known = ", ".join(t.name for t in record.metadata.tables)
        raise QueryRejected(
            "sql.unknown_table",
            f"Table '{node.name[:60]}' is not in dataset '{record.name}' (tables: {known}).",
        )
    if not spec.public and (spec.max_rows_per_unit is None or spec.privacy_unit is None):
        raise QueryRejected(
            "sql.no_contribution_bound",
            f"Table '{spec.name}' declares no privacy unit and contribution bound, so it cannot be joined.",
        )
    return Joined(index, (node.alias or node.name).lower(), spec, stored)


def _condition(join: exp.Join, tables: list[Joined]) -> tuple[exp.Expression, frozenset[str]]:
    """The generated ON condition of the newest table, after checking it is an allowed equality."""
    table = tables[-1]
    using = join.args.get("using")
    on = join.args.get("on")
    if using:
        if len(using) != 1 or on is not None:
            raise QueryRejected("sql.join", "JOIN ... USING takes exactly one column.")
        name = using[0].name
        earlier = [t for t in tables[:-1] if t.spec.column(name) is not None]
        if len(earlier) != 1:
            raise QueryRejected(
                "sql.join", f"USING ({name}) must name a column of exactly one earlier table."
            )
        left, right = (earlier[0], name), (table, name)
    else:
        while isinstance(on, exp.Paren):
            on = on.this
        if not isinstance(on, exp.EQ) or not all(isinstance(s, exp.Column) for s in (on.this, on.expression)):
            raise QueryRejected(
                "sql.join", "A join condition is one equality of two columns: ON a.x = b.y (or USING (x))."
            )
        sides = [_side(column, tables) for column in (on.this, on.expression)]
        news = [s for s in sides if s[0].index == table.index]
        if len(news) != 1:
            raise QueryRejected(
                "sql.join", "ON must compare a column of the joined table with an earlier table's."
            )
        left = next(s for s in sides if s[0].index != table.index)
        right = news[0]
    return _equality(left, right), frozenset({left[1], right[1]})


def _side(column: exp.Column, tables: list[Joined]) -> tuple[Joined, str]:
    if column.table:
        table = next((t for t in tables if t.alias == column.table.lower()), None)
    else:
        having = [t for t in tables if t.spec.column(column.name) is not None]
        table = having[0] if len(having) == 1 else None
    if table is None or table.spec.column(column.name) is None:
        raise QueryRejected(
            "sql.join",
            f"'{column.sql()[:60]}' in ON is not a column of one of the joined tables; qualify it.",
        )
    return table, column.name


def _equality(left: tuple[Joined, str], right: tuple[Joined, str]) -> exp.Expression:
    (earlier, left_name), (table, right_name) = left, right
    left_spec, right_spec = earlier.spec.column(left_name), table.spec.column(right_name)
    assert left_spec is not None and right_spec is not None
    if table.spec.public:
        if right_spec.name.lower() not in {k.lower() for k in table.spec.join_keys or []}:
            keys = ", ".join(table.spec.join_keys or [])
            raise QueryRejected(
                "sql.join", f"Public table '{table.spec.name}' may be joined on its join keys only ({keys})."
            )
        if left_spec.role is not ColumnRole.DIMENSION:
            raise QueryRejected(
                "sql.join", f"A lookup joins on a dimension; '{left_spec.name}' is a {left_spec.role.value}."
            )
    else:
        units = (earlier.spec.privacy_unit or "", table.spec.privacy_unit or "")
        if units[0].lower() != units[1].lower():  # e.g. card_id and person_id: not one kind of unit
            raise QueryRejected(
                "sql.join",
                f"Tables '{earlier.spec.name}' and '{table.spec.name}' have different privacy units "
                f"({units[0]}, {units[1]}); only tables about the same unit are joined.",
            )
        if earlier.spec.public or (left_spec.name, right_spec.name) != units:
            raise QueryRejected(
                "sql.join",
                f"Tables about persons are joined on their privacy units only: ON {earlier.alias}.{units[0]} "
                f"= {table.alias}.{units[1]}.",
            )
    left_stored, right_stored = earlier.stored.column(left_spec.name), table.stored.column(right_spec.name)
    assert left_stored is not None and right_stored is not None
    if kind_of_duckdb_type(left_stored.duckdb_type) != kind_of_duckdb_type(right_stored.duckdb_type):
        raise QueryRejected(
            "sql.type_mismatch",
            f"'{left_spec.name}' and '{right_spec.name}' have different types; they cannot be joined.",
        )
    return exp.EQ(
        this=exp.column(left_stored.physical, table=f"j{earlier.index}", quoted=True),
        expression=exp.column(right_stored.physical, table=f"j{table.index}", quoted=True),
    )


def joined_bound(product: int, owner: int | None, requested: int | None) -> int:
    """The joined rows kept per person: the product of the tables' bounds, lowered by the owner's
    ``max_joined_rows_per_unit`` and then by the analyst's (which may only lower it further)."""
    allowed = product if owner is None else min(product, owner)
    if requested is None:
        return allowed
    if isinstance(requested, bool) or not isinstance(requested, int) or not 1 <= requested <= allowed:
        source = "the product of the joined tables' bounds" + (
            "" if owner is None or owner >= product else " and the owner's max_joined_rows_per_unit"
        )
        raise InvalidRequest(
            f"max_joined_rows_per_unit must be a whole number from 1 to {allowed} for this join "
            f"({source}); it can only lower a person's contribution.",
            code="request.max_joined_rows_per_unit",
        )
    return requested


def _build(
    tables: list[Joined],
    conditions: list[tuple[str, exp.Expression, frozenset[str]]],
    owner: int | None,
    requested: int | None,
) -> Relation:
    counts: dict[str, int] = {}
    for table in tables:
        for column in table.spec.columns:
            counts[column.name.lower()] = counts.get(column.name.lower(), 0) + 1
    names: dict[tuple[int, str], str] = {}
    originals: dict[str, str] = {}
    columns: list[ColumnSpec] = []
    stored_columns: list[StoredColumn] = []
    selected: list[exp.Expression] = []
    for table in tables:
        for spec in table.spec.columns:
            stored = table.stored.column(spec.name)
            name = spec.name if counts[spec.name.lower()] == 1 else f"{table.alias}_{spec.name}"
            names[(table.index, spec.name.lower())] = name
            originals[name] = spec.name
            if stored is None:  # identifiers are never stored, but named so the rule can say why
                columns.append(spec.model_copy(update={"name": name}))
                continue
            keys = spec.keys if spec.keys is not None else stored.public_keys
            columns.append(spec.model_copy(update={"name": name, "keys": keys}))
            prefix = f"j{table.index}__"
            update = {"name": name, "physical": prefix + stored.physical}
            if stored.clamped is not None:
                update["clamped"] = prefix + stored.clamped
                selected.append(_select(table.index, stored.clamped, prefix + stored.clamped))
            selected.append(_select(table.index, stored.physical, prefix + stored.physical))
            stored_columns.append(stored.model_copy(update=update))
    driving = tables[0]
    unit = names[(0, (driving.spec.privacy_unit or "").lower())]
    bound = prod(t.spec.max_rows_per_unit or 1 for t in tables if not t.spec.public)
    kept = joined_bound(bound, owner, requested)
    clamp = kept if kept < bound else None
    virtual = TableSpec(
        name=driving.spec.name,
        source=driving.spec.source,
        privacy_unit=unit,
        max_rows_per_unit=bound if clamp is None else clamp,
        columns=columns,
    )
    query = exp.select(*selected).from_(exp.alias_(exp.table_(driving.stored.physical, quoted=True), "j0"))
    for table, (side, condition, _) in zip(tables[1:], conditions, strict=True):
        target = exp.alias_(exp.table_(table.stored.physical, quoted=True), f"j{table.index}")
        query = query.join(target, on=condition, join_type=side or None)
    if clamp is not None:
        unit_stored = driving.stored.column(driving.spec.privacy_unit or "")
        assert unit_stored is not None
        query = query.qualify(_kept(unit_stored.physical, [s.this for s in selected], clamp))
    source = exp.Subquery(this=query, alias=exp.TableAlias(this=exp.to_identifier("joined", quoted=True)))
    joined = StoredTable(
        name=driving.stored.name,
        physical="joined",
        columns=stored_columns,
        source_sha256=driving.stored.source_sha256,
        content_sha256=driving.stored.content_sha256,
    )
    compared = frozenset(name for *_, names_ in conditions for name in names_)
    return Relation(virtual, joined, source, tuple(tables), names, originals, compared)


def _kept(unit: str, columns: list[exp.Expression], limit: int) -> exp.Expression:
    """``row_number() OVER (PARTITION BY unit ORDER BY <row contents>) <= limit``: which of a
    person's joined rows are kept depends on that person's rows only (never on row positions, which
    other persons' rows shift), so one person more or less changes no one else's kept rows."""
    contents = [c.copy() for c in columns]
    order = [exp.Anonymous(this="hash", expressions=[c.copy() for c in contents]), *contents]
    window = exp.Window(
        this=exp.RowNumber(),
        partition_by=[exp.column(unit, table="j0", quoted=True)],
        order=exp.Order(expressions=[exp.Ordered(this=o, nulls_first=False) for o in order]),
        over="OVER",
    )
    return exp.LTE(this=window, expression=exp.Literal.number(limit))


def _select(index: int, physical: str, name: str) -> exp.Expression:
    column = exp.column(physical, table=f"j{index}", quoted=True)
    return exp.Alias(this=column, alias=exp.to_identifier(name, quoted=True))
