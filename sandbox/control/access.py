"""Use case: the access lifecycle. Analysts request and withdraw; owners approve, reject, amend
and revoke; requests and policies expire. Each transition is one transaction with its event."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.catalog.models import DatasetRecord
from sandbox.control.base import Core, Page, account_row, dataset_row, keyset_page, scope
from sandbox.errors import NotFound
from sandbox.policies import amendments, workflow
from sandbox.policies.models import AccessRequestView, PolicyView
from sandbox.principals import Principal
from sandbox.query.summary import AggregateKind
from sandbox.store.models import AccessRequest, Policy


class Access(Core):
    """Requests, approvals, amendments, revocations and expiry."""

    def request_access(
        self,
        principal: Principal,
        dataset: DatasetRecord,
        *,
        purpose: str,
        columns: list[str],
        epsilon: float,
        delta: float,
        valid_until: datetime,
        valid_from: datetime | None = None,
    ) -> AccessRequestView:
        """An analyst asks access for their organisation (``access.requested``).

        ``Conflict`` (``request.duplicate_pending``) while the organisation has a pending request
        on the dataset.
        """
        with self._store.write_transaction() as session:
            dataset_row(session, dataset)
            return workflow.create_request(
                session,
                principal,
                dataset,
                purpose=purpose,
                columns=columns,
                epsilon=epsilon,
                delta=delta,
                valid_from=valid_from,
                valid_until=valid_until,
                now=self._now(),
            )

    def withdraw_request(self, principal: Principal, request_id: str) -> AccessRequestView:
        """An analyst withdraws their organisation's pending request (``access.withdrawn``)."""
        with self._store.write_transaction() as session:
            return workflow.withdraw(session, principal, request_id, now=self._now())

    def _request_views(self, session: Session, rows: Iterable[AccessRequest]) -> list[AccessRequestView]:
        rows = list(rows)
        ids = [r.id for r in rows]
        found = session.execute(select(Policy.request_id, Policy.id).where(Policy.request_id.in_(ids)))
        policies = {request_id: policy_id for request_id, policy_id in found}
        return [workflow.request_view(r, policies.get(r.id)) for r in rows]

    def get_request(self, principal: Principal, request_id: str) -> AccessRequestView:
        """One access request visible to the principal; ``NotFound`` otherwise."""
        with self._store.read() as session:
            row = session.scalar(
                select(AccessRequest).where(
                    AccessRequest.id == request_id,
                    scope(principal, AccessRequest.organisation, AccessRequest.dataset_owner),
                )
            )
            if row is None:
                raise NotFound(f"no access request {request_id!r}", code="request.not_found")
            return self._request_views(session, [row])[0]

    def list_requests(
        self, principal: Principal, *, status: str | None = None, limit: int = 1000
    ) -> list[AccessRequestView]:
        """The newest ``limit`` requests visible to the principal (first page of ``request_page``)."""
        return self.request_page(principal, status=status, limit=limit).items

    def request_page(
        self, principal: Principal, *, status: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> Page[AccessRequestView]:
        """Requests visible to the principal, newest first, one page (analyst own org; owner own
        datasets; operator all). Pass ``next_cursor`` back as ``cursor`` for the next page."""
        statement = select(AccessRequest).where(
            scope(principal, AccessRequest.organisation, AccessRequest.dataset_owner)
        )
        if status is not None:
            statement = statement.where(AccessRequest.status == status)
        with self._store.read() as session:
            rows, next_cursor = keyset_page(
                session, statement, AccessRequest.created_at, AccessRequest.id, limit, cursor
            )
            return Page(self._request_views(session, rows), next_cursor)

    def approve(
        self,
        principal: Principal,
        request_id: str,
        dataset: DatasetRecord,
        *,
        columns: list[str] | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
        valid_until: datetime | None = None,
        max_epsilon_per_query: float,
        max_delta_per_query: float = 0.0,
        min_group_size: int = 0,
        aggregates: Iterable[AggregateKind] | None = None,
    ) -> PolicyView:
        """The dataset's owner approves, possibly narrowing (``access.approved``).

        The new policy's grant is charged to the organisation's lifetime account on the dataset's
        ledger as well: what earlier policies spent still counts against the lifetime caps.
        """
        with self._store.write_transaction() as session:
            policy = workflow.approve(
                session,
                principal,
                request_id,
                dataset,
                settings=self.settings,
                now=self._now(),
                columns=columns,
                epsilon=epsilon,
                delta=delta,
                valid_until=valid_until,
                max_epsilon_per_query=max_epsilon_per_query,
                max_delta_per_query=max_delta_per_query,
                min_group_size=min_group_size,
                aggregates=aggregates,
            )
            account_row(session, dataset_row(session, dataset).ledger_id, policy.organisation)
            return policy

    def reject(
        self, principal: Principal, request_id: str, dataset: DatasetRecord, *, reason: str
    ) -> AccessRequestView:
        """The dataset's owner rejects with a reason (``access.rejected``)."""
        with self._store.write_transaction() as session:
            return workflow.reject(session, principal, request_id, dataset, reason=reason, now=self._now())

    def amend_policy(
        self,
        principal: Principal,
        policy_id: str,
        dataset: DatasetRecord,
        *,
        epsilon: float | None = None,
        delta: float | None = None,
        valid_until: datetime | None = None,
        columns: list[str] | None = None,
        aggregates: Iterable[AggregateKind] | None = None,
        max_epsilon_per_query: float | None = None,
        max_delta_per_query: float | None = None,
        reason: str = "",
    ) -> PolicyView:
        """The owner amends an active policy (``policy.amended`` with old and new terms).

        Top up (or lower, not below what was used) epsilon and delta, change ``valid_until``,
        narrow columns or aggregates, change per-query caps. No revoke-and-re-grant needed.
        """
        with self._store.write_transaction() as session:
            return amendments.amend(
                session,
                principal,
                policy_id,
                dataset,
                settings=self.settings,
                now=self._now(),
                epsilon=epsilon,
                delta=delta,
                valid_until=valid_until,
                columns=columns,
                aggregates=aggregates,
                max_epsilon_per_query=max_epsilon_per_query,
                max_delta_per_query=max_delta_per_query,
                reason=reason,
            )

    def get_policy(self, principal: Principal, policy_id: str) -> PolicyView:
        """One policy visible to the principal; ``NotFound`` otherwise."""
        with self._store.read() as session:
            row = session.scalar(
                select(Policy).where(
                    Policy.id == policy_id, scope(principal, Policy.organisation, Policy.dataset_owner)
                )
            )
            if row is None:
                raise NotFound(f"no policy {policy_id!r}", code="policy.not_found")
            return workflow.policy_view(row)

    def list_policies(self, principal: Principal, *, limit: int = 1000) -> list[PolicyView]:
        """The newest ``limit`` policies visible to the principal (first page of ``policy_page``)."""
        return self.policy_page(principal, limit=limit).items

    def policy_page(
        self, principal: Principal, *, limit: int = 100, cursor: str | None = None
    ) -> Page[PolicyView]:
        """Policies visible to the principal, newest first, one page (analyst own org; owner own
        datasets; operator all)."""
        statement = select(Policy).where(scope(principal, Policy.organisation, Policy.dataset_owner))
        with self._store.read() as session:
            rows, next_cursor = keyset_page(session, statement, Policy.approved_at, Policy.id, limit, cursor)
            return Page([workflow.policy_view(r) for r in rows], next_cursor)

    def revoke_policy(
        self, principal: Principal, policy_id: str, dataset: DatasetRecord, *, reason: str
    ) -> PolicyView:
        """The dataset's owner revokes a policy (``policy.revoked``); its queries stop at once."""
        with self._store.write_transaction() as session:
            return workflow.revoke(session, principal, policy_id, dataset, reason=reason, now=self._now())

    def expire_policies(self, now: datetime | None = None) -> int:
        """Mark every active policy past ``valid_until`` expired (``policy.expired``); the count.

        Safe from several processes at once: rows are locked, so each expires once.
        """
        moment = workflow.as_utc(now) if now is not None else self._now()
        with self._store.write_transaction() as session:
            return workflow.expire_due(session, moment)

    def expire_requests(self, now: datetime | None = None) -> int:
        """Mark requests pending longer than ``request_ttl_days`` expired (``access.expired``); the count."""
        moment = workflow.as_utc(now) if now is not None else self._now()
        with self._store.write_transaction() as session:
            return workflow.expire_requests(session, moment, timedelta(days=self.settings.request_ttl_days))
