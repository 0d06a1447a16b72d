"""Rebuild the governed state from the audit chain alone: every policy's status, terms and spent
amounts, every lifetime ledger and account, every user's roles. ``audit verify`` compares the
result with the stored state, so a row changed behind the control plane's back (a spent amount
reset, a policy un-revoked, a grant altered) is named even though every event still verifies.

Events recorded before the lifetime ledger existed carry no ``ledger``: their dataset's ledger is
the one of the same name, as the migration made it. A query's charge is made by its
``query.reserved`` event (at admission, never refunded); ``query.answered`` and ``query.failed``
close it without moving amounts. Events still pending their link into the chain are applied after
the chain's, in the order they were written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sandbox.audit.models import AuditEventView, EventType
from sandbox.budget import DELTA_SCALE, EPSILON_SCALE

COUNTERS = ("epsilon_spent", "delta_spent")


def _units(text: Any, scale: int) -> int | None:
    return None if text is None else int(Decimal(str(text)) * scale)


def _epsilon(text: Any) -> int:
    return _units(text, EPSILON_SCALE) or 0


def _delta(text: Any) -> int:
    return _units(text, DELTA_SCALE) or 0


@dataclass
class Account:
    """Counters and caps of a ledger, a lifetime account or a policy, as the chain says."""

    values: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))

    def charge(self, epsilon: int, delta: int) -> None:
        """Add a query's charge."""
        self.values["epsilon_spent"] += epsilon
        self.values["delta_spent"] += delta


@dataclass
class ReplayedState:
    """What the chain proves: rows keyed as in the store, each a dict of field → value."""

    policies: dict[str, Account] = field(default_factory=dict)
    ledgers: dict[str, Account] = field(default_factory=dict)
    accounts: dict[tuple[str, str], Account] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_ledgers: dict[str, str] = field(default_factory=dict)
    open_queries: set[str] = field(default_factory=set)

    def ledger(self, ledger_id: str) -> Account:
        """The ledger's replayed row (created empty)."""
        return self.ledgers.setdefault(ledger_id, Account())

    def account(self, ledger_id: str, organisation: str) -> Account:
        """The lifetime account's replayed row (created empty)."""
        return self.accounts.setdefault((ledger_id, organisation), Account())

    def ledger_of(self, dataset: str | None) -> str:
        """The ledger a dataset is charged to now."""
        return self.dataset_ledgers.get(dataset or "", dataset or "")


def replay(events: Iterable[AuditEventView]) -> ReplayedState:
    """The state the events prove (events in chain order, already hash-verified)."""
    state = ReplayedState()
    for event in events:
        apply(state, event)
    return state


def apply(state: ReplayedState, event: AuditEventView) -> None:
    """Apply one event (the next in chain order) to the replayed state."""
    handler = _HANDLERS.get(event.type)
    if handler is not None:
        handler(state, event)


def _registered(state: ReplayedState, event: AuditEventView) -> None:
    ledger = str(event.payload.get("ledger") or event.dataset)
    state.dataset_ledgers[event.dataset or ""] = ledger
    state.ledger(ledger)


def _cap_set(state: ReplayedState, event: AuditEventView) -> None:
    payload = event.payload
    ledger_id = str(payload.get("ledger") or state.ledger_of(event.dataset))
    epsilon, delta = _units(payload.get("epsilon"), EPSILON_SCALE), _units(payload.get("delta"), DELTA_SCALE)
    scope = payload.get("scope", "dataset")
    if scope == "organisation":
        account = state.account(ledger_id, str(payload["target_organisation"]))
        account.values.update(epsilon_cap=epsilon, delta_cap=delta)
    elif scope == "per_organisation":
        state.ledger(ledger_id).values.update(organisation_epsilon_cap=epsilon, organisation_delta_cap=delta)
    else:
        state.ledger(ledger_id).values.update(epsilon_cap=epsilon, delta_cap=delta)


def _terms(payload: dict[str, Any]) -> dict[str, Any]:
    converters: dict[str, tuple[str, Callable[[Any], Any]]] = {
        "epsilon": ("epsilon_granted", _epsilon),
        "delta": ("delta_granted", _delta),
        "max_epsilon_per_query": ("max_epsilon_per_query", _epsilon),
        "max_delta_per_query": ("max_delta_per_query", _delta),
        "valid_until": ("valid_until", str),
        "columns": ("columns", list),
        "aggregates": ("aggregates", list),
    }
    return {name: convert(payload[key]) for key, (name, convert) in converters.items() if key in payload}


def _approved(state: ReplayedState, event: AuditEventView) -> None:
    policy = Account()
    policy.values.update(
        status="active",
        organisation=event.organisation,
        dataset=event.dataset,
        min_group_size=event.payload.get("min_group_size"),
        **_terms(event.payload),
    )
    state.policies[str(event.payload["policy_id"])] = policy
    state.account(state.ledger_of(event.dataset), str(event.organisation))


def _amended(state: ReplayedState, event: AuditEventView) -> None:
    policy = state.policies.get(str(event.payload.get("policy_id")))
    if policy is not None:
        policy.values.update(_terms(event.payload.get("new", {})))


def _ended(status: str) -> Any:
    def handle(state: ReplayedState, event: AuditEventView) -> None:
        policy = state.policies.get(str(event.payload.get("policy_id")))
        if policy is not None:
            policy.values["status"] = status

    return handle


def _reserved(state: ReplayedState, event: AuditEventView) -> None:
    payload = event.payload
    policy_id = str(payload["policy_id"])
    ledger_id = str(payload.get("ledger") or state.ledger_of(event.dataset))
    organisation = str(event.organisation)
    epsilon, delta = _epsilon(payload["epsilon"]), _delta(payload["delta"])
    state.open_queries.add(str(payload["query_id"]))
    for account in _charged(state, policy_id, organisation, ledger_id):
        account.charge(epsilon, delta)


def _settled(state: ReplayedState, event: AuditEventView) -> None:
    state.open_queries.discard(str(event.payload.get("query_id")))


def _charged(state: ReplayedState, policy_id: str, organisation: str, ledger_id: str) -> list[Account]:
    policy = state.policies.setdefault(policy_id, Account())
    return [policy, state.ledger(ledger_id), state.account(ledger_id, organisation)]


def _user_added(state: ReplayedState, event: AuditEventView) -> None:
    payload = event.payload
    state.users[str(payload["username"])] = {
        "roles": sorted(payload.get("roles", [])),
        "organisation": payload.get("organisation"),
        "disabled": False,
    }


def _roles_changed(state: ReplayedState, event: AuditEventView) -> None:
    user = state.users.setdefault(str(event.payload["username"]), {"disabled": False})
    new = event.payload.get("new", {})
    user.update(roles=sorted(new.get("roles", [])), organisation=new.get("organisation"))


def _disabled(disabled: bool) -> Any:
    def handle(state: ReplayedState, event: AuditEventView) -> None:
        state.users.setdefault(str(event.payload["username"]), {})["disabled"] = disabled

    return handle


_HANDLERS = {
    EventType.DATASET_REGISTERED.value: _registered,
    EventType.BUDGET_CAP_SET.value: _cap_set,
    EventType.ACCESS_APPROVED.value: _approved,
    EventType.POLICY_AMENDED.value: _amended,
    EventType.POLICY_REVOKED.value: _ended("revoked"),
    EventType.POLICY_EXPIRED.value: _ended("expired"),
    EventType.QUERY_RESERVED.value: _reserved,
    EventType.QUERY_ANSWERED.value: _settled,
    EventType.QUERY_FAILED.value: _settled,
    EventType.USER_ADDED.value: _user_added,
    EventType.USER_ROLES_CHANGED.value: _roles_changed,
    EventType.USER_DISABLED.value: _disabled(True),
    EventType.USER_ENABLED.value: _disabled(False),
}
