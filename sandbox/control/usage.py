"""Use case: what was used. Query history, budgets (analyst: own organisation; owner: own
datasets; operator: all) and metering (可计量)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sandbox.control.base import Core, Page, keyset_page, scope
from sandbox.control.ledger import BudgetView, QueryStatus, QueryView, budget_view, query_view
from sandbox.control.metering import UsageReport
from sandbox.control.metering import usage as usage_report
from sandbox.errors import Forbidden, NotFound
from sandbox.policies import workflow
from sandbox.policies.models import PolicyStatus
from sandbox.principals import Principal, Role
from sandbox.store.models import Dataset, Ledger, LedgerAccount, Policy, Query


class Usage(Core):
    """Query history, budgets and usage reports."""

    def list_queries(
        self, principal: Principal, *, dataset: str | None = None, limit: int = 100
    ) -> list[QueryView]:
        """The newest ``limit`` queries visible to the principal (first page of ``query_page``)."""
        return self.query_page(principal, dataset=dataset, limit=limit).items

    def query_page(
        self, principal: Principal, *, dataset: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[QueryView]:
        """Query history, newest first, one page: analyst own org; owner own datasets; operator all."""
        statement = select(Query).where(scope(principal, Query.organisation, Query.dataset_owner))
        if dataset is not None:
            statement = statement.where(Query.dataset == dataset)
        with self._store.read() as session:
            rows, next_cursor = keyset_page(session, statement, Query.created_at, Query.id, limit, cursor)
            return Page([query_view(q) for q in rows], next_cursor)

    def get_query(self, principal: Principal, query_id: str) -> QueryView:
        """One query visible to the principal; ``NotFound`` otherwise (other tenants' included)."""
        with self._store.read() as session:
            row = session.scalar(
                select(Query).where(
                    Query.id == query_id, scope(principal, Query.organisation, Query.dataset_owner)
                )
            )
            if row is None:
                raise NotFound(f"no query {query_id!r}", code="query.not_found")
            return query_view(row)

    def budget(self, principal: Principal) -> list[BudgetView]:
        """Budget per visible policy (active first): granted, spent, reserved, remaining, lifetime.

        Analysts see their organisation's, owners their datasets', operators every organisation's.
        """
        with self._store.read() as session:
            rows = session.execute(
                select(Policy, Ledger, LedgerAccount)
                .join(Dataset, Dataset.name == Policy.dataset)
                .join(Ledger, Ledger.id == Dataset.ledger_id)
                .outerjoin(
                    LedgerAccount,
                    (LedgerAccount.ledger_id == Ledger.id)
                    & (LedgerAccount.organisation == Policy.organisation),
                )
                .where(scope(principal, Policy.organisation, Policy.dataset_owner))
                .order_by((Policy.status == PolicyStatus.ACTIVE.value).desc(), Policy.approved_at.desc())
                .limit(10_000)
            ).all()
            running = _running(session, [policy.id for policy, _ledger, _account in rows])
            return [
                budget_view(policy, ledger, account, running.get(policy.id, (0, 0)))
                for policy, ledger, account in rows
            ]

    def usage(
        self,
        principal: Principal,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        organisation: str | None = None,
        dataset: str | None = None,
    ) -> UsageReport:
        """Metering rows per organisation and dataset (operator: all; owner: own datasets only)."""
        if principal.has(Role.OPERATOR):
            owner = None
        elif principal.has(Role.OWNER) and principal.organisation:
            owner = principal.organisation
        else:
            raise Forbidden("only operators and data owners may read usage", code="usage.forbidden")
        with self._store.read() as session:
            return usage_report(
                session,
                since=workflow.as_utc(since) if since else None,
                until=workflow.as_utc(until) if until else None,
                organisation=organisation,
                dataset=dataset,
                dataset_owner=owner,
            )


def _running(session: Session, policy_ids: list[str]) -> dict[str, tuple[int, int]]:
    """The (epsilon, delta) units charged to each policy by its queries still running."""
    if not policy_ids:
        return {}
    rows = session.execute(
        select(Query.policy_id, func.sum(Query.epsilon), func.sum(Query.delta))
        .where(Query.status == QueryStatus.RESERVED.value, Query.policy_id.in_(policy_ids))
        .group_by(Query.policy_id)
    ).all()
    return {str(policy_id): (int(epsilon), int(delta)) for policy_id, epsilon, delta in rows}
