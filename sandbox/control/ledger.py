"""The privacy-budget ledger's views: budget states and views, query tickets and records.

Every charge lands on three accounts at once, in exact integer units (``sandbox.budget``): the
policy it was made under, the organisation's lifetime account on the dataset's ledger, and the
ledger itself (all organisations). A query is charged when it is admitted, before any data is
read (``sandbox.control.charges``); while it runs, its charge is shown as reserved.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Row, and_, bindparam, insert, select

from sandbox.budget import Allowance, BudgetState, delta_float, epsilon_float
from sandbox.policies.models import PolicyView
from sandbox.store.db import Runner
from sandbox.store.models import Base, Dataset, Ledger, LedgerAccount, Policy, Query

_DATASETS = Base.metadata.tables[Dataset.__tablename__]
_LEDGERS = Base.metadata.tables[Ledger.__tablename__]
_ACCOUNTS = Base.metadata.tables[LedgerAccount.__tablename__]
_QUERIES = Base.metadata.tables[Query.__tablename__]


class QueryStatus(StrEnum):
    """States of a recorded query."""

    RESERVED = "reserved"  # budget reserved, result not yet released (or the process died)
    ANSWERED = "answered"
    REPLAYED = "replayed"  # answered from the replay cache at no cost
    REJECTED = "rejected"
    FAILED = "failed"  # accepted, data read, execution failed: the charge is kept


class BudgetView(BaseModel):
    """One policy's budget as its organisation, the dataset owner or an operator sees it.

    ``*_remaining`` is what the organisation may still spend under both the policy and its
    lifetime cap; ``lifetime_*_used`` is its loss on the dataset's ledger across all its
    policies, past and present (spent and reserved).
    """

    model_config = ConfigDict(frozen=True)

    policy_id: str
    organisation: str
    dataset: str
    status: str
    ledger: str
    epsilon_granted: float
    epsilon_spent: float
    epsilon_reserved: float
    epsilon_remaining: float
    delta_granted: float
    delta_spent: float
    delta_reserved: float
    delta_remaining: float
    lifetime_epsilon_used: float
    lifetime_epsilon_cap: float | None
    lifetime_delta_used: float
    lifetime_delta_cap: float | None
    valid_until: datetime


class QueryTicket(BaseModel):
    """A charged query: the pipeline runs it, then calls ``complete_query`` or ``fail_query``
    (which record its outcome from what the ticket carries)."""

    model_config = ConfigDict(frozen=True)

    query_id: str
    principal: str
    dataset: str
    dataset_version: str
    fingerprint: str
    epsilon_units: int
    delta_units: int
    policy: PolicyView
    epsilon: float
    delta: float
    epsilon_remaining: float
    delta_remaining: float
    cached: bool = False


class CachedAnswer(BaseModel):
    """A replayed release: the stored answer of an identical earlier query, at no cost."""

    model_config = ConfigDict(frozen=True)

    query_id: str
    replay_of: str
    answer: dict[str, Any]
    policy: PolicyView
    epsilon: float = 0.0
    delta: float = 0.0
    epsilon_remaining: float
    delta_remaining: float
    cached: bool = True


class QueryView(BaseModel):
    """One recorded query (history): never its result values."""

    model_config = ConfigDict(frozen=True)

    id: str
    principal: str
    organisation: str | None
    dataset: str
    dataset_version: str | None
    policy_id: str | None
    sql: str
    fingerprint: str | None
    epsilon: float
    delta: float
    status: QueryStatus
    cached: bool
    replay_of: str | None
    rule: str | None
    error_code: str | None
    result_shape: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None


class LedgerAmounts(Protocol):
    """A ledger's caps and spent amounts (a ``Ledger`` row, or the same columns read elsewhere)."""

    @property
    def epsilon_cap(self) -> int | None: ...
    @property
    def delta_cap(self) -> int | None: ...
    @property
    def organisation_epsilon_cap(self) -> int | None: ...
    @property
    def organisation_delta_cap(self) -> int | None: ...
    @property
    def epsilon_spent(self) -> int: ...
    @property
    def delta_spent(self) -> int: ...


class AccountAmounts(Protocol):
    """A lifetime account's caps and spent amounts."""

    @property
    def epsilon_cap(self) -> int | None: ...
    @property
    def delta_cap(self) -> int | None: ...
    @property
    def epsilon_spent(self) -> int: ...
    @property
    def delta_spent(self) -> int: ...


def budget_state(
    policy: Policy | Row[Any],
    ledger: Ledger | LedgerAmounts | None = None,
    account: LedgerAccount | AccountAmounts | None = None,
) -> BudgetState:
    """The amounts the policy engine checks a query against (queries still running count as spent).

    Without the ledger rows the caps are left out (enough for replays, which cost nothing).
    """
    state = BudgetState(
        epsilon_granted=policy.epsilon_granted,
        epsilon_used=policy.epsilon_spent,
        delta_granted=policy.delta_granted,
        delta_used=policy.delta_spent,
    )
    if ledger is None or account is None:
        return state
    return replace(
        state,
        lifetime_epsilon=Allowance(
            account.epsilon_cap if account.epsilon_cap is not None else ledger.organisation_epsilon_cap,
            account.epsilon_spent,
        ),
        lifetime_delta=Allowance(
            account.delta_cap if account.delta_cap is not None else ledger.organisation_delta_cap,
            account.delta_spent,
        ),
        dataset_epsilon=Allowance(ledger.epsilon_cap, ledger.epsilon_spent),
        dataset_delta=Allowance(ledger.delta_cap, ledger.delta_spent),
    )


# the organisation's lifetime account on the dataset's current ledger, in one pre-built read
_LIFETIME = (
    select(
        _LEDGERS.c.organisation_epsilon_cap,
        _LEDGERS.c.organisation_delta_cap,
        _ACCOUNTS.c.epsilon_cap,
        _ACCOUNTS.c.delta_cap,
        _ACCOUNTS.c.epsilon_spent,
        _ACCOUNTS.c.delta_spent,
    )
    .select_from(
        _DATASETS.join(_LEDGERS, _LEDGERS.c.id == _DATASETS.c.ledger_id).join(
            _ACCOUNTS,
            and_(
                _ACCOUNTS.c.ledger_id == _LEDGERS.c.id,
                _ACCOUNTS.c.organisation == bindparam("b_organisation"),
            ),
        )
    )
    .where(_DATASETS.c.name == bindparam("b_dataset"))
)


def own_budget_state(runner: Runner, policy: Policy | Row[Any], dataset: str) -> BudgetState:
    """The policy's amounts and its organisation's lifetime account on the dataset (one read, no
    lock): what a free replay reports as remaining. The dataset-wide cap is left out."""
    row = runner.execute(
        _LIFETIME, {"b_dataset": dataset, "b_organisation": policy.organisation}
    ).one_or_none()
    state = budget_state(policy)
    if row is None:
        return state
    epsilon_cap = row.epsilon_cap if row.epsilon_cap is not None else row.organisation_epsilon_cap
    delta_cap = row.delta_cap if row.delta_cap is not None else row.organisation_delta_cap
    return replace(
        state,
        lifetime_epsilon=Allowance(epsilon_cap, row.epsilon_spent),
        lifetime_delta=Allowance(delta_cap, row.delta_spent),
    )


_INSERT_QUERY = insert(_QUERIES)
_READ_QUERY = select(_QUERIES).where(_QUERIES.c.id == bindparam("b_id"))


def insert_query(session: Runner, values: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Insert query records (one pre-built statement: no ORM flush on the hot path); a list's
    records must all set the same columns."""
    session.execute(_INSERT_QUERY, values)


def query_record(session: Runner, query_id: str) -> Row[Any] | None:
    """The stored record of a query (a row of ``queries``), if any."""
    return session.execute(_READ_QUERY, {"b_id": query_id}).one_or_none()


def budget_view(
    policy: Policy, ledger: Ledger, account: LedgerAccount | None, running: tuple[int, int] = (0, 0)
) -> BudgetView:
    """The budget view of a policy charged to ``ledger`` (``account``: the organisation's there);
    ``running``: the (epsilon, delta) units of its queries still running, shown as reserved."""
    if account is None:
        account = LedgerAccount(
            ledger_id=ledger.id, organisation=policy.organisation, epsilon_spent=0, delta_spent=0
        )
    state = budget_state(policy, ledger, account)
    reserved_epsilon, reserved_delta = running
    return BudgetView(
        policy_id=policy.id,
        organisation=policy.organisation,
        dataset=policy.dataset,
        status=policy.status,
        ledger=ledger.id,
        epsilon_granted=epsilon_float(policy.epsilon_granted),
        epsilon_spent=epsilon_float(policy.epsilon_spent - reserved_epsilon),
        epsilon_reserved=epsilon_float(reserved_epsilon),
        epsilon_remaining=epsilon_float(state.epsilon_remaining),
        delta_granted=delta_float(policy.delta_granted),
        delta_spent=delta_float(policy.delta_spent - reserved_delta),
        delta_reserved=delta_float(reserved_delta),
        delta_remaining=delta_float(state.delta_remaining),
        lifetime_epsilon_used=epsilon_float(state.lifetime_epsilon.used),
        lifetime_epsilon_cap=None
        if state.lifetime_epsilon.cap is None
        else epsilon_float(state.lifetime_epsilon.cap),
        lifetime_delta_used=delta_float(state.lifetime_delta.used),
        lifetime_delta_cap=None
        if state.lifetime_delta.cap is None
        else delta_float(state.lifetime_delta.cap),
        valid_until=policy.valid_until,
    )


def query_view(row: Query) -> QueryView:
    """The history view of a recorded query."""
    return QueryView(
        id=row.id,
        principal=row.principal,
        organisation=row.organisation,
        dataset=row.dataset,
        dataset_version=row.dataset_version,
        policy_id=row.policy_id,
        sql=row.sql,
        fingerprint=row.fingerprint,
        epsilon=epsilon_float(row.epsilon),
        delta=delta_float(row.delta),
        status=QueryStatus(row.status),
        cached=row.status == QueryStatus.REPLAYED.value,
        replay_of=row.replay_of,
        rule=row.rule,
        error_code=row.error_code,
        result_shape=row.result_shape,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def result_shape(answer: dict[str, Any]) -> dict[str, Any]:
    """What the audit chain records of a result: column names and row count, never values."""
    columns = answer.get("columns")
    rows = answer.get("rows")
    shape: dict[str, Any] = {}
    if isinstance(columns, list):
        shape["columns"] = [
            c if isinstance(c, str) else str(c.get("name")) if isinstance(c, dict) else str(c)
            for c in columns
        ]
    if isinstance(rows, list):
        shape["rows"] = len(rows)
    return shape
