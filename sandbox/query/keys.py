"""DuckDB's identity text of an owner's public keys, to match them with the groups DuckDB returns.

A group's identity is DuckDB's own text of its key (``CAST(key AS VARCHAR)``), never the Python
value the driver converts it to: distinct DuckDB values can become one Python value (``infinity``
and ``9999-12-31`` both become ``date.max``), which would let one group's totals replace another's.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import duckdb

from sandbox.query.scalar import kind_of_duckdb_type
from sandbox.query.whitelist import Kind


@lru_cache(maxsize=256)
def identities(duckdb_type: str, keys: tuple[Any, ...]) -> tuple[str | None, ...]:
    """DuckDB's text of each key cast to the key's type (None for a NULL key); numeric keys as
    ``key + 0``, as the generated statement releases floating keys (-0.0 is 0.0; the same value
    and text for other numeric types)."""
    value = "TRY_CAST($1 AS {type})" + (" + 0" if kind_of_duckdb_type(duckdb_type) is Kind.NUMERIC else "")
    sql = f"SELECT CAST({value.format(type=duckdb_type)} AS VARCHAR)"
    texts: list[str | None] = []
    with duckdb.connect(config={"enable_external_access": False}) as con:
        for key in keys:
            row = None if key is None else con.execute(sql, [key]).fetchone()
            texts.append(None if row is None else row[0])
    return tuple(texts)
