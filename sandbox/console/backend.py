"""Every call the console makes into the gateway: the HTTP API's own handlers and the control plane.

The console has no rules of its own. Actions go through the same functions the HTTP API's routes
run (role first, with the API's ``ensure_role`` and the role each endpoint demands), reads go to
the control plane with the caller's principal, so scoping, validation and error codes are the
API's. Keeping them in this one module keeps the console's coupling to the control plane in one
place.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sandbox.api.deps import authenticate, ensure_role
from sandbox.api.routes import access_requests, datasets, policies, queries
from sandbox.api.routes import budget as budget_routes
from sandbox.api.schemas import (
    AccessRequestCreate,
    Amendment,
    Approval,
    CapSetting,
    DatasetRegistration,
    QueryRequest,
    Rejection,
    Revocation,
)
from sandbox.api.services import Services
from sandbox.catalog.models import DatasetRecord
from sandbox.control import (
    AccessRequestView,
    AuditEventView,
    BudgetView,
    PolicyView,
    QueryView,
    TokenView,
    UsageReport,
    VerifyReport,
)
from sandbox.errors import NotFound
from sandbox.principals import Principal, Role

AUDIT_PAGE = 50
HISTORY = 1000


class Backend:
    """The console's view of one gateway process's services."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.control = services.control

    # ------------------------------------------------------------------ identity

    def principal(self, token: str) -> Principal:
        """The token's principal, authenticated and rate-limited exactly as an API call."""
        return authenticate(self.services, token)

    @staticmethod
    def require(principal: Principal, *roles: Role) -> None:
        """``Forbidden`` (``auth.role_required``) unless the principal holds one of ``roles``."""
        ensure_role(principal, roles)

    # ------------------------------------------------------------------ catalogue

    def datasets(self, principal: Principal) -> list[DatasetRecord]:
        """Datasets visible to the principal (``GET /api/v1/datasets``)."""
        return [r for r in self.services.catalog.list() if r.visible_to(principal)]

    def dataset(self, principal: Principal, name: str) -> DatasetRecord:
        """One visible dataset; ``NotFound`` for unknown and hidden ones alike."""
        return self.services.visible_dataset(principal, name)

    def certificate(self, principal: Principal, name: str) -> dict[str, Any]:
        """The dataset's registration certificate (``GET /api/v1/datasets/{name}/certificate``)."""
        return datasets.get_certificate(name, principal, self.services)

    def verify_certificate(self, certificate: dict[str, Any]) -> VerifyReport:
        """The certificate checked against the audit chain."""
        return self.control.verify_certificate(certificate)

    def register(self, principal: Principal, body: DatasetRegistration) -> DatasetRecord:
        """Register from the import folder (``POST /api/v1/datasets``, owners and operators)."""
        self.require(principal, Role.OWNER, Role.OPERATOR)
        registered = datasets.register_dataset(body, principal, self.services)
        return self.services.catalog.get(registered.name)

    # ------------------------------------------------------------------ access lifecycle

    def request_access(self, principal: Principal, body: AccessRequestCreate) -> AccessRequestView:
        """``POST /api/v1/access-requests`` (analysts)."""
        self.require(principal, Role.ANALYST)
        return access_requests.create_request(body, principal, self.services)

    def requests(self, principal: Principal, status: str | None = None) -> list[AccessRequestView]:
        """Requests visible to the principal, newest first."""
        found = self.control.list_requests(principal, status=status)
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    def access_request(self, principal: Principal, request_id: str) -> AccessRequestView:
        """One visible request."""
        return self.control.get_request(principal, request_id)

    def approve(self, principal: Principal, request_id: str, body: Approval) -> PolicyView:
        """``POST /api/v1/access-requests/{id}/approve`` (the dataset's owner)."""
        self.require(principal, Role.OWNER)
        return access_requests.approve_request(request_id, body, principal, self.services)

    def reject(self, principal: Principal, request_id: str, body: Rejection) -> AccessRequestView:
        """``POST /api/v1/access-requests/{id}/reject`` (the dataset's owner)."""
        self.require(principal, Role.OWNER)
        return access_requests.reject_request(request_id, body, principal, self.services)

    def policies(self, principal: Principal) -> list[PolicyView]:
        """Visible policies, newest first."""
        return sorted(self.control.list_policies(principal), key=lambda p: p.approved_at, reverse=True)

    def policy(self, principal: Principal, policy_id: str) -> PolicyView:
        """One visible policy."""
        return self.control.get_policy(principal, policy_id)

    def revoke(self, principal: Principal, policy_id: str, body: Revocation) -> PolicyView:
        """``POST /api/v1/policies/{id}/revoke`` (the dataset's owner)."""
        self.require(principal, Role.OWNER)
        return policies.revoke_policy(policy_id, body, principal, self.services)

    def amend(self, principal: Principal, policy_id: str, body: Amendment) -> PolicyView:
        """``POST /api/v1/policies/{id}/amend`` (the dataset's owner)."""
        self.require(principal, Role.OWNER)
        return policies.amend_policy(policy_id, body, principal, self.services)

    def set_cap(self, principal: Principal, dataset: str, body: CapSetting) -> None:
        """``PUT /api/v1/datasets/{name}/caps`` (the dataset's owner)."""
        self.require(principal, Role.OWNER)
        budget_routes.set_cap(dataset, body, principal, self.services)

    # ------------------------------------------------------------------ budget, queries, usage

    def budgets(self, principal: Principal) -> list[BudgetView]:
        """Budget per visible policy (operators: every organisation's)."""
        return self.control.budget(principal)

    def lifetime_spent(self, principal: Principal, organisation: str, dataset: str) -> float:
        """Epsilon the organisation has spent on the dataset so far, over all its policies."""
        report = self.control.usage(principal, organisation=organisation, dataset=dataset)
        return sum(row.epsilon_spent for row in report.rows)

    def queries(self, principal: Principal, limit: int = HISTORY) -> list[QueryView]:
        """Query history visible to the principal, newest first."""
        return self.control.list_queries(principal, limit=limit)

    def estimate(self, token: str, body: QueryRequest) -> dict[str, Any]:
        """``POST /api/v1/queries/estimate``: cost and accuracy, spends nothing."""
        return queries._estimate_query(self.services, token, body)

    def answer(self, token: str, body: QueryRequest) -> dict[str, Any]:
        """``POST /api/v1/queries``: a noisy answer (spends budget, recorded and audited)."""
        return queries._run_query(self.services, token, body)

    def usage(
        self, principal: Principal, since: datetime | None = None, until: datetime | None = None
    ) -> UsageReport:
        """The metering report (``GET /api/v1/usage``, owners and operators)."""
        self.require(principal, Role.OWNER, Role.OPERATOR)
        return self.control.usage(principal, since=since, until=until)

    def weekly_usage(self, principal: Principal, weeks: int = 8) -> list[tuple[datetime, UsageReport]]:
        """The metering report of each of the last ``weeks`` weeks (Monday 00:00 UTC onwards)."""
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        monday = today - timedelta(days=today.weekday())
        starts = [monday - timedelta(weeks=n) for n in range(weeks - 1, -1, -1)]
        return [(start, self.usage(principal, start, start + timedelta(weeks=1))) for start in starts]

    def refusals_by_rule(self, principal: Principal) -> list[tuple[str, int]]:
        """Refused queries per rule among the visible history, most frequent first."""
        counted = Counter(
            q.rule or q.error_code or "?" for q in self.queries(principal) if q.status == "rejected"
        )
        return counted.most_common()

    # ------------------------------------------------------------------ operators

    def audit_events(
        self, principal: Principal, filters: dict[str, Any], *, after: int | None, limit: int = AUDIT_PAGE
    ) -> list[AuditEventView]:
        """A page of matching events (``GET /api/v1/audit``, operators)."""
        self.require(principal, Role.OPERATOR)
        return self.control.audit_events(principal, after=after, limit=limit, **filters)

    def audit_event(self, principal: Principal, seq: int) -> AuditEventView:
        """The event with that sequence number."""
        found = self.audit_events(principal, {}, after=seq - 1, limit=1)
        if not found or found[0].seq != seq:
            raise NotFound(f"no audit event {seq}", code="audit.event_not_found")
        return found[0]

    def export_audit(
        self, principal: Principal, fmt: Literal["jsonl", "csv"], filters: dict[str, Any]
    ) -> str:
        """Matching events as JSON Lines or CSV (``GET /api/v1/audit/export``)."""
        self.require(principal, Role.OPERATOR)
        return self.control.export_audit(principal, fmt, **filters)

    def verify_audit(self, principal: Principal) -> VerifyReport:
        """Walk the chain (``GET /api/v1/audit/verify``)."""
        self.require(principal, Role.OPERATOR)
        return self.control.verify_audit()

    def users(self, principal: Principal) -> list[tuple[Principal, list[TokenView]]]:
        """Every user with their tokens (never the secrets)."""
        self.require(principal, Role.OPERATOR)
        tokens = self.control.list_tokens()
        return [(user, [t for t in tokens if t.username == user.name]) for user in self.control.list_users()]

    def revoke_token(self, principal: Principal, token_id: str) -> None:
        """Revoke an API token (operators; ``token.revoked`` names the operator)."""
        self.require(principal, Role.OPERATOR)
        self.control.revoke_token(token_id, actor=principal.name)

    def metrics_text(self, principal: Principal) -> str:
        """The Prometheus exposition (``GET /metrics``)."""
        self.require(principal, Role.OPERATOR)
        return self.services.metrics.exposition().decode("utf-8")
