"""Prometheus metrics of the gateway: queries by outcome, refusals by rule, latency, epsilon spent;
and, read from the state store at each scrape, every active policy's remaining budget and every
organisation's lifetime loss, plus refused authentications and authorisations.

Each app has its own registry (several apps can live in one process, e.g. in tests). With several
uvicorn workers, set ``PROMETHEUS_MULTIPROC_DIR`` (``sandbox serve --workers`` does) and
``/metrics`` aggregates every worker's values.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

from sandbox.control import BudgetView
from sandbox.errors import SandboxError

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class GatewayMetrics:
    """The gateway's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queries = Counter(
            "sandbox_queries",
            "Query requests by outcome (answered, replayed, rejected, failed) and kind (query, estimate).",
            ["outcome", "kind"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "sandbox_rejections", "Refused query requests by rule.", ["rule"], registry=self.registry
        )
        self.latency = Histogram(
            "sandbox_query_latency_seconds",
            "Time to answer a query request, by outcome.",
            ["outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.epsilon_spent = Counter(
            "sandbox_epsilon_spent",
            "Epsilon charged by answered queries, by dataset.",
            ["dataset"],
            registry=self.registry,
        )
        self.delta_spent = Counter(
            "sandbox_delta_spent",
            "Delta charged by answered queries, by dataset.",
            ["dataset"],
            registry=self.registry,
        )

    def answered(self, answer: dict[str, Any], dataset: str, seconds: float) -> None:
        """Count an answered (or replayed) query and what it spent."""
        outcome = "replayed" if answer.get("cached") else "answered"
        self.queries.labels(outcome, "query").inc()
        self.latency.labels(outcome).observe(seconds)
        self.epsilon_spent.labels(dataset).inc(float(answer.get("epsilon_spent") or 0.0))
        self.delta_spent.labels(dataset).inc(float(answer.get("delta_spent") or 0.0))

    def estimated(self, seconds: float) -> None:
        """Count an answered estimate."""
        self.queries.labels("answered", "estimate").inc()
        self.latency.labels("estimated").observe(seconds)

    def refused(self, error: SandboxError, kind: str, seconds: float) -> None:
        """Count a refused or failed query request by its rule (or error code)."""
        outcome = "failed" if error.http_status >= 500 else "rejected"
        self.queries.labels(outcome, kind).inc()
        self.rejections.labels(error.rule or error.code).inc()
        self.latency.labels(outcome).observe(seconds)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric (all workers in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            return generate_latest(combined)
        return generate_latest(self.registry)


def budget_exposition(budgets: Iterable[BudgetView], refusals: Mapping[str, int]) -> bytes:
    """Gauges of remaining budget per active policy and lifetime loss per organisation and ledger."""
    registry = CollectorRegistry()
    labels = ["organisation", "dataset", "policy"]
    remaining = {
        amount: Gauge(
            f"sandbox_budget_{amount}_remaining",
            f"{amount.capitalize()} an organisation may still spend (active policy and lifetime cap).",
            labels,
            registry=registry,
        )
        for amount in ("epsilon", "delta")
    }
    lifetime = Gauge(
        "sandbox_lifetime_epsilon_used",
        "Epsilon an organisation has spent or reserved on a ledger, across all its policies.",
        ["organisation", "ledger"],
        registry=registry,
    )
    refused = Gauge(
        "sandbox_refusals",
        "Failed authentications and authorisation refusals seen by this process, by event type.",
        ["type"],
        registry=registry,
    )
    for budget in budgets:
        lifetime.labels(budget.organisation, budget.ledger).set(budget.lifetime_epsilon_used)
        if budget.status == "active":
            key = (budget.organisation, budget.dataset, budget.policy_id)
            remaining["epsilon"].labels(*key).set(budget.epsilon_remaining)
            remaining["delta"].labels(*key).set(budget.delta_remaining)
    for kind, count in refusals.items():
        refused.labels(kind).set(count)
    return generate_latest(registry)
