"""The DP query engine: parse → validate (whitelist) → plan → rewrite → execute → release.

Exports are loaded on first use, so that importing ``sandbox.query.summary`` (as the control plane
does) does not pull in DuckDB and OpenDP.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.query.engine import Engine, Estimate
    from sandbox.query.plan import QueryPlan
    from sandbox.query.result import Result

_EXPORTS = {
    "Engine": "sandbox.query.engine",
    "Estimate": "sandbox.query.engine",
    "QueryPlan": "sandbox.query.plan",
    "Result": "sandbox.query.result",
}

__all__ = ["Engine", "Estimate", "QueryPlan", "Result"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
