"""The flow of one query, one call per stage:

catalog → policy (active policy) → DP plan (whitelist, calibration) → ledger (decide + reserve,
or replay) → DuckDB + OpenDP (execute, release) → ledger + audit (charge) → answer.

Every refusal is recorded in the audit chain with its rule; nothing is charged before the
reservation, and a reservation is never refunded once data has been read.
"""

from __future__ import annotations

from typing import Any

from sandbox.catalog.registry import Catalog
from sandbox.control import CachedAnswer, ControlPlane
from sandbox.errors import SandboxError
from sandbox.policies.models import PolicyView
from sandbox.principals import Principal
from sandbox.query.engine import Engine, estimate_of
from sandbox.query.plan import QueryPlan


class QueryPipeline:
    """Answers and estimates analyst queries under the control plane's policies and budgets."""

    def __init__(self, catalog: Catalog, engine: Engine, control: ControlPlane) -> None:
        self.catalog = catalog
        self.engine = engine
        self.control = control

    def answer(
        self, principal: Principal, dataset: str, sql: str, epsilon: float, delta: float = 0.0
    ) -> dict[str, Any]:
        """Release a noisy answer, or raise the error that names the broken rule."""
        plan, policy = self._plan(principal, dataset, sql, epsilon, delta, record_rejection=True)
        outcome = self.control.begin_query(principal, plan.query.record, plan.summary, sql=sql, policy=policy)
        if isinstance(outcome, CachedAnswer):
            return _answer(
                outcome.query_id,
                outcome.answer,
                epsilon=0.0,
                delta=0.0,
                cached=True,
                epsilon_remaining=outcome.epsilon_remaining,
                delta_remaining=outcome.delta_remaining,
            )
        try:
            result = self.engine.execute(plan)
        except SandboxError as error:
            self.control.fail_query(outcome, error)
            raise
        released = result.to_dict()
        self.control.complete_query(outcome, released)
        return _answer(
            outcome.query_id,
            released,
            epsilon=outcome.epsilon,
            delta=outcome.delta,
            cached=False,
            epsilon_remaining=outcome.epsilon_remaining,
            delta_remaining=outcome.delta_remaining,
        )

    def estimate(
        self, principal: Principal, dataset: str, sql: str, epsilon: float, delta: float = 0.0
    ) -> dict[str, Any]:
        """Cost, expected accuracy and budget after the query; reads no data, spends nothing."""
        plan, policy = self._plan(principal, dataset, sql, epsilon, delta, record_rejection=False)
        budget = next((b for b in self.control.budget(principal) if b.policy_id == policy.id), None)
        estimate = estimate_of(plan).to_dict()
        estimate["budget_after"] = {
            "epsilon_remaining": None if budget is None else budget.epsilon_remaining - plan.epsilon,
            "delta_remaining": None if budget is None else budget.delta_remaining - plan.delta_spent,
        }
        return estimate

    def _plan(
        self,
        principal: Principal,
        dataset: str,
        sql: str,
        epsilon: float,
        delta: float,
        *,
        record_rejection: bool,
    ) -> tuple[QueryPlan, PolicyView]:
        """The query's plan under the organisation's active policy, and that policy."""
        try:
            record = self.catalog.get(dataset)
            policy = self.control.active_policy(principal, record)
            plan = self.engine.plan_for(record, sql, epsilon, delta, min_group_size=policy.min_group_size)
            return plan, policy
        except SandboxError as error:
            if record_rejection:
                self.control.reject_query(principal, dataset, sql, error)
            raise


def _answer(
    query_id: str,
    released: dict[str, Any],
    *,
    epsilon: float,
    delta: float,
    cached: bool,
    epsilon_remaining: float,
    delta_remaining: float,
) -> dict[str, Any]:
    return {
        "query_id": query_id,
        "columns": released["columns"],
        "rows": released["rows"],
        "epsilon_spent": epsilon,
        "delta_spent": delta,
        "cached": cached,
        "accuracy": released["accuracy"],
        "grouping": released.get("grouping"),
        "suppressed_rows": released.get("suppressed_rows", 0),
        "budget": {"epsilon_remaining": epsilon_remaining, "delta_remaining": delta_remaining},
    }
