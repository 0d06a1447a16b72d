"""Parse analyst SQL (DuckDB dialect) into exactly one SELECT statement, or reject it."""

from __future__ import annotations

import logging
from typing import cast

from sqlglot import ParseError, TokenError, exp, parse

from sandbox.errors import QueryRejected
from sandbox.query.whitelist import DIALECT, MAX_EXPRESSION_DEPTH, STATEMENT_KEYWORDS

logging.getLogger("sqlglot").setLevel(logging.ERROR)


def parse_select(sql: str) -> exp.Select:
    """The single SELECT statement of ``sql``; anything else is rejected with its rule."""
    try:
        statements = [s for s in parse(sql, read=DIALECT) if s is not None]
    except (ParseError, TokenError) as error:
        keyword = _leading_keyword(sql)
        if keyword in STATEMENT_KEYWORDS:
            raise QueryRejected(
                "sql.statement_not_allowed", f"Only SELECT queries are allowed; {keyword} statements are not."
            ) from None
        raise QueryRejected(
            "sql.parse_error", f"The SQL could not be parsed (DuckDB dialect): {_first_line(error)}"
        ) from None
    except RecursionError:  # sqlglot's recursive descent (compiled: about 500 to 1000 levels)
        raise too_deeply_nested() from None
    if not statements:
        raise QueryRejected("sql.parse_error", "The SQL text is empty.")
    if len(statements) > 1:
        raise QueryRejected(
            "sql.multiple_statements", "Send exactly one SELECT statement per query (found several)."
        )
    statement = cast(exp.Expression, statements[0])
    if isinstance(statement, exp.SetOperation):
        raise QueryRejected(
            "sql.set_operation",
            f"{type(statement).__name__.upper()} is not allowed; send one SELECT per query.",
        )
    if isinstance(statement, exp.Subquery):
        raise QueryRejected("sql.subquery", "Subqueries are not allowed; query one table directly.")
    if not isinstance(statement, exp.Select):
        raise QueryRejected(
            "sql.statement_not_allowed",
            f"Only SELECT queries are allowed; {_statement_name(statement)} statements are not.",
        )
    if _deeper_than(statement, MAX_EXPRESSION_DEPTH):
        raise too_deeply_nested()
    return statement


def too_deeply_nested() -> QueryRejected:
    """The rejection of a tree too deep to check (``MAX_EXPRESSION_DEPTH``)."""
    return QueryRejected(
        "sql.too_deeply_nested",
        "The query nests expressions too deeply to be checked; flatten it (fewer nested "
        "parentheses, function calls or chained conditions).",
    )


def _deeper_than(root: exp.Expression, limit: int) -> bool:
    """Whether the tree under ``root`` has more than ``limit`` levels (walked without recursion)."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in node.iter_expressions())
    return False


def _statement_name(statement: exp.Expression) -> str:
    if isinstance(statement, exp.Command):
        return str(statement.this).upper()
    if isinstance(statement, exp.Alias | exp.Column | exp.Identifier):
        return "unrecognised"
    return type(statement).__name__.upper()


def _leading_keyword(sql: str) -> str | None:
    """The first word of ``sql`` in upper case, if it tokenizes."""
    try:
        tokens = DIALECT.tokenize(sql)
    except TokenError:
        return None
    return tokens[0].text.upper() if tokens else None


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0][:200]
