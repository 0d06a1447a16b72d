"""The DP query engine: parse → validate (whitelist) → plan → rewrite → execute → release."""

from sandbox.query.engine import Engine, Estimate
from sandbox.query.plan import QueryPlan
from sandbox.query.result import Result

__all__ = ["Engine", "Estimate", "QueryPlan", "Result"]
