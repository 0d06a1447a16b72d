"""Notifications, derived from the state each time they are shown (nothing stored twice).

Request pending (owners), request approved or rejected in the last 14 days (analysts), budget
below 20% and policy expiring within 7 days (analysts and owners).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sandbox.console.backend import Backend
from sandbox.console.i18n import lazy
from sandbox.principals import Principal, Role

RECENT = timedelta(days=14)
EXPIRING = timedelta(days=7)
LOW_BUDGET = 0.2


@dataclass(frozen=True)
class Notification:
    """One line of the list: kind (CSS class), untranslated message with values, time, link."""

    kind: str
    message: str
    values: dict[str, str]
    time: datetime
    link: str


def notifications(backend: Backend, principal: Principal) -> list[Notification]:
    """The principal's notifications, newest first."""
    now = datetime.now(UTC)
    found: list[Notification] = []
    if principal.has(Role.OWNER):
        for request in backend.requests(principal, "pending"):
            found.append(
                Notification(
                    "pending",
                    lazy("%(org)s asks for access to %(dataset)s"),
                    {"org": request.organisation, "dataset": request.dataset},
                    request.created_at,
                    f"/owner/requests/{request.id}",
                )
            )
    if principal.has(Role.ANALYST):
        for request in backend.requests(principal):
            if request.decided_at is None or now - request.decided_at > RECENT:
                continue
            message = (
                lazy("Your request for %(dataset)s was approved")
                if request.status == "approved"
                else lazy("Your request for %(dataset)s was rejected: %(reason)s")
            )
            found.append(
                Notification(
                    request.status,
                    message,
                    {"dataset": request.dataset, "reason": request.reason or ""},
                    request.decided_at,
                    "/analyst/requests",
                )
            )
    if principal.has(Role.ANALYST) or principal.has(Role.OWNER):
        for budget in backend.budgets(principal):
            if budget.status != "active":
                continue
            link = "/analyst" if principal.has(Role.ANALYST) else "/owner/policies"
            values = {"org": budget.organisation, "dataset": budget.dataset}
            if budget.epsilon_granted > 0 and budget.epsilon_remaining < LOW_BUDGET * budget.epsilon_granted:
                found.append(
                    Notification(
                        "low",
                        lazy("Less than 20%% of the budget of %(org)s on %(dataset)s remains"),
                        values,
                        now,
                        link,
                    )
                )
            if budget.valid_until - now < EXPIRING:
                found.append(
                    Notification(
                        "expiring",
                        lazy("The policy of %(org)s on %(dataset)s expires on %(date)s"),
                        {**values, "date": budget.valid_until.strftime("%Y-%m-%d")},
                        budget.valid_until,
                        link,
                    )
                )
    return sorted(found, key=lambda n: n.time, reverse=True)
