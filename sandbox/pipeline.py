"""The flow of one query, one call per stage:

admission (SQL length, a dataset the caller may see) → catalog → policy (active policy) → DP plan
(whitelist, calibration) → ledger (replay, or decide + reserve: the one admission step) → DuckDB +
OpenDP (execute, release) → ledger + audit (charge) → answer.

Every refusal is recorded in the audit chain with its rule, here and in the admission step only;
nothing is charged before the reservation, and a reservation is never refunded once data has been
read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.catalog.models import Classification, DatasetRecord
from sandbox.catalog.registry import Catalog
from sandbox.control import CachedAnswer, ControlPlane
from sandbox.errors import InvalidRequest, NotFound, PayloadTooLarge, PolicyDenied, SandboxError
from sandbox.policies.engine import check_query
from sandbox.policies.models import PolicyView
from sandbox.principals import Principal
from sandbox.query.engine import Engine, estimate_of
from sandbox.query.plan import QueryPlan


class QueryPipeline:
    """Answers and estimates analyst queries under the control plane's policies and budgets."""

    def __init__(
        self, catalog: Catalog, engine: Engine, control: ControlPlane, *, max_sql_length: int | None = None
    ) -> None:
        self.catalog = catalog
        self.engine = engine
        self.control = control
        self.max_sql_length = max_sql_length

    def answer(
        self,
        principal: Principal,
        dataset: str,
        sql: str,
        epsilon: float | None,
        delta: float = 0.0,
        *,
        ci: float | None = None,
        group_size: int | None = None,
        max_joined_rows_per_unit: int | None = None,
    ) -> dict[str, Any]:
        """Release a noisy answer, or raise the error that names the broken rule.

        With ``ci`` instead of ``epsilon``, the epsilon is the smallest whose 95% half-width on the
        first aggregate is at most ``ci`` (at the assumed ``group_size`` for AVG/VARIANCE/STDDEV);
        the policy and the budget then decide as for any epsilon. ``max_joined_rows_per_unit``
        lowers a person's joined rows for this query (docs/sql.md).
        """
        request = _Request(epsilon, delta, ci, group_size, max_joined_rows_per_unit)
        plan, _policy = self._plan(principal, dataset, sql, request, record_rejection=True)
        outcome = self.control.begin_query(principal, plan.query.record, plan.summary, sql=sql)
        if isinstance(outcome, CachedAnswer):
            replayed = _answer(
                outcome.query_id,
                outcome.answer,
                epsilon=0.0,
                delta=0.0,
                cached=True,
                epsilon_remaining=outcome.epsilon_remaining,
                delta_remaining=outcome.delta_remaining,
            )
            return replayed | {"min_group_size": plan.min_group_size, "ci_target": ci}
        try:
            result = self.engine.execute(plan)
        except SandboxError as error:
            self.control.fail_query(outcome, error)
            raise
        released = result.to_dict()
        self.control.complete_query(outcome, released)
        answer = _answer(
            outcome.query_id,
            released,
            epsilon=outcome.epsilon,
            delta=outcome.delta,
            cached=False,
            epsilon_remaining=outcome.epsilon_remaining,
            delta_remaining=outcome.delta_remaining,
        )
        return answer | {"min_group_size": plan.min_group_size, "ci_target": ci}

    def estimate(
        self,
        principal: Principal,
        dataset: str,
        sql: str,
        epsilon: float | None,
        delta: float = 0.0,
        *,
        ci: float | None = None,
        group_size: int | None = None,
        max_joined_rows_per_unit: int | None = None,
    ) -> dict[str, Any]:
        """Cost, expected accuracy, what a policy must grant, and the budget after the query.

        Reads no data and spends nothing. It answers before access is granted too (no policy, or an
        ended one), so an analyst can size the access request; ``access`` says which case it is.
        """
        record = self._admitted(principal, dataset, sql)
        policy: PolicyView | None
        try:
            policy = self.control.active_policy(principal, record)
            access: dict[str, Any] = {"granted": True, "policy_id": policy.id, "rule": None, "message": ""}
        except PolicyDenied as error:
            if error.code not in BEFORE_ACCESS:
                raise
            policy = None
            access = {"granted": False, "policy_id": None, "rule": error.code, "message": error.message}
        min_group_size = policy.min_group_size if policy else self._default_min_group_size(record)
        request = _Request(epsilon, delta, ci, group_size, max_joined_rows_per_unit)
        plan = self._plan_of(record, sql, request, min_group_size)
        estimate = estimate_of(plan, group_size).to_dict()
        budget = None
        if policy is not None:
            budget = next((b for b in self.control.budget(principal) if b.policy_id == policy.id), None)
            decision = check_query(policy, plan.summary)
            access |= {"fits_policy": decision.allowed, "rule": decision.rule, "message": decision.message}
        estimate["access"] = access
        estimate["policy_needed"] = {
            "columns": sorted(plan.summary.columns, key=str.lower),
            "aggregates": sorted(a.value for a in plan.summary.aggregates),
            "max_epsilon_per_query": plan.epsilon,
            "max_delta_per_query": plan.delta_spent,
            "min_group_size": min_group_size,
        }
        estimate["ci_target"] = ci
        estimate["budget_after"] = {
            "epsilon_remaining": None if budget is None else budget.epsilon_remaining - plan.epsilon,
            "delta_remaining": None if budget is None else budget.delta_remaining - plan.delta_spent,
        }
        return estimate

    def _plan(
        self, principal: Principal, dataset: str, sql: str, request: _Request, *, record_rejection: bool
    ) -> tuple[QueryPlan, PolicyView]:
        """The query's plan under the organisation's active policy, and that policy."""
        try:
            record = self._admitted(principal, dataset, sql)
            policy = self.control.active_policy(principal, record)
            return self._plan_of(record, sql, request, policy.min_group_size), policy
        except SandboxError as error:
            if record_rejection:
                self.control.reject_query(principal, dataset, sql, error)
            raise

    def _plan_of(self, record: DatasetRecord, sql: str, request: _Request, min_group_size: int) -> QueryPlan:
        """The plan at the request's epsilon, or at the one its accuracy target ``ci`` needs
        (exactly one is given)."""
        if (request.epsilon is None) == (request.ci is None):
            raise InvalidRequest("pass exactly one of epsilon and ci.", code="request.epsilon")
        epsilon = request.epsilon
        if request.ci is not None:
            epsilon = self.engine.epsilon_for_ci(
                record,
                sql,
                request.ci,
                request.delta,
                min_group_size=min_group_size,
                group_size=request.group_size,
                max_joined_rows_per_unit=request.max_joined_rows_per_unit,
            )
        assert epsilon is not None
        return self.engine.plan_for(
            record,
            sql,
            epsilon,
            request.delta,
            min_group_size=min_group_size,
            max_joined_rows_per_unit=request.max_joined_rows_per_unit,
        )

    def _default_min_group_size(self, record: DatasetRecord) -> int:
        """The smallest minimum group size a policy on ``record`` may have (before access)."""
        important = record.metadata.classification is Classification.IMPORTANT
        return self.engine.settings.important_min_group_size if important else 0

    def _admitted(self, principal: Principal, dataset: str, sql: str) -> DatasetRecord:
        """The dataset, once the SQL is within the length limit and the caller may see the dataset
        (a hidden dataset is reported exactly as an unknown one)."""
        if self.max_sql_length is not None and len(sql) > self.max_sql_length:
            raise PayloadTooLarge(
                f"The SQL text is {len(sql)} characters; the limit is {self.max_sql_length}.",
                code="request.sql_too_long",
            )
        record = self.catalog.get(dataset)
        if not record.visible_to(principal):
            raise NotFound(f"dataset {dataset!r} is not registered", code="catalog.dataset_not_found")
        return record


@dataclass(frozen=True)
class _Request:
    """The fields of a query request that shape its plan."""

    epsilon: float | None
    delta: float
    ci: float | None
    group_size: int | None
    max_joined_rows_per_unit: int | None


# Denials that mean "no usable policy yet": estimate still answers (planning before access).
BEFORE_ACCESS = frozenset(
    {"policy.no_active_policy", "policy.revoked", "policy.expired", "policy.not_yet_valid"}
)


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
