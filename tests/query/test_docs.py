"""The SQL and DP references document what the engine does: every error code, every quantity."""

from __future__ import annotations

import re

from query_support import REPO

from sandbox.query.plan import Quantity

CODE = re.compile(r"\"((?:sql|request|query|policy)\.[a-z_]+)\"")


def raised_codes() -> set[str]:
    """Every error code written in the engine's source."""
    codes: set[str] = set()
    for path in (REPO / "sandbox" / "query").glob("*.py"):
        codes |= set(CODE.findall(path.read_text(encoding="utf-8")))
    return codes


def test_every_error_code_is_documented() -> None:
    """Each code the engine can raise has a row in docs/sql.md."""
    documented = (REPO / "docs" / "sql.md").read_text(encoding="utf-8")
    codes = raised_codes()
    assert len(codes) >= 40
    missing = sorted(c for c in codes if f"`{c}`" not in documented)
    assert not missing, f"undocumented error codes: {missing}"


def test_documented_codes_exist() -> None:
    """docs/sql.md documents no code the engine does not raise (besides the catalog's)."""
    documented = set(
        re.findall(r"`((?:sql|request|query|policy)\.[a-z_]+)`", (REPO / "docs" / "sql.md").read_text())
    )
    assert documented - raised_codes() == set()


def test_every_quantity_is_documented() -> None:
    """docs/dp.md gives the sensitivity of every base quantity."""
    text = (REPO / "docs" / "dp.md").read_text(encoding="utf-8")
    missing = [q.value for q in Quantity if f"`{q.value}" not in text]
    assert not missing
