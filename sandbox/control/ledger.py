"""The privacy-budget ledger: reservations and charges, budget views, query tickets and records.

Every charge lands on three accounts at once, in exact integer units (``sandbox.budget``): the
policy it was made under, the organisation's lifetime account on the dataset's ledger, and the
ledger itself (all organisations). A reservation counts as spent until it is settled.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict
from sqlalchemy import BigInteger, BindParameter, Row, Table, Update, and_, bindparam, insert, select, update

from sandbox.audit.chain import canonical_json
from sandbox.budget import Allowance, BudgetState, delta_float, epsilon_float
from sandbox.errors import InternalError
from sandbox.policies.models import PolicyView
from sandbox.store.db import Runner
from sandbox.store.models import Base, Dataset, Ledger, LedgerAccount, Policy, Query, ReplayEntry

_POLICIES = Base.metadata.tables[Policy.__tablename__]
_DATASETS = Base.metadata.tables[Dataset.__tablename__]
_LEDGERS = Base.metadata.tables[Ledger.__tablename__]
_ACCOUNTS = Base.metadata.tables[LedgerAccount.__tablename__]
_QUERIES = Base.metadata.tables[Query.__tablename__]
_REPLAY = Base.metadata.tables[ReplayEntry.__tablename__]


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
    """A reserved query: the pipeline runs it, then calls ``complete_query`` or ``fail_query``."""

    model_config = ConfigDict(frozen=True)

    query_id: str
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


def budget_state(
    policy: Policy | Row[Any], ledger: Ledger | None = None, account: LedgerAccount | None = None
) -> BudgetState:
    """The amounts the policy engine checks a query against (reservations count as used).

    Without the ledger rows the caps are left out (enough for replays, which cost nothing).
    """
    state = BudgetState(
        epsilon_granted=policy.epsilon_granted,
        epsilon_used=policy.epsilon_spent + policy.epsilon_reserved,
        delta_granted=policy.delta_granted,
        delta_used=policy.delta_spent + policy.delta_reserved,
    )
    if ledger is None or account is None:
        return state
    return BudgetState(
        epsilon_granted=state.epsilon_granted,
        epsilon_used=state.epsilon_used,
        delta_granted=state.delta_granted,
        delta_used=state.delta_used,
        lifetime_epsilon=Allowance(
            account.epsilon_cap if account.epsilon_cap is not None else ledger.organisation_epsilon_cap,
            account.epsilon_spent + account.epsilon_reserved,
        ),
        lifetime_delta=Allowance(
            account.delta_cap if account.delta_cap is not None else ledger.organisation_delta_cap,
            account.delta_spent + account.delta_reserved,
        ),
        dataset_epsilon=Allowance(ledger.epsilon_cap, ledger.epsilon_spent + ledger.epsilon_reserved),
        dataset_delta=Allowance(ledger.delta_cap, ledger.delta_spent + ledger.delta_reserved),
    )


# the organisation's lifetime account on the dataset's current ledger, in one pre-built read
_LIFETIME = (
    select(
        _LEDGERS.c.organisation_epsilon_cap,
        _LEDGERS.c.organisation_delta_cap,
        _ACCOUNTS.c.epsilon_cap,
        _ACCOUNTS.c.delta_cap,
        _ACCOUNTS.c.epsilon_spent,
        _ACCOUNTS.c.epsilon_reserved,
        _ACCOUNTS.c.delta_spent,
        _ACCOUNTS.c.delta_reserved,
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
        lifetime_epsilon=Allowance(epsilon_cap, row.epsilon_spent + row.epsilon_reserved),
        lifetime_delta=Allowance(delta_cap, row.delta_spent + row.delta_reserved),
    )


def _shift(table: Table, *keys: str, settle: bool) -> Update:
    """UPDATE moving amounts into ``*_reserved`` (reserve) or from it into ``*_spent`` (settle)."""
    changes: dict[str, Any] = {}
    for amount in ("epsilon", "delta"):
        units: BindParameter[int] = bindparam(f"b_{amount}", type_=BigInteger)
        if settle:
            changes[f"{amount}_reserved"] = table.c[f"{amount}_reserved"] - units
            changes[f"{amount}_spent"] = table.c[f"{amount}_spent"] + units
        else:
            changes[f"{amount}_reserved"] = table.c[f"{amount}_reserved"] + units
    where = [table.c[key] == bindparam(f"b_{key}") for key in keys]
    return update(table).where(*where).values(changes)


def _statements(*, settle: bool) -> tuple[Update, Update, Update]:
    return (
        _shift(_POLICIES, "id", settle=settle),
        _shift(_LEDGERS, "id", settle=settle),
        _shift(_ACCOUNTS, "ledger_id", "organisation", settle=settle),
    )


_RESERVE = _statements(settle=False)
_SETTLE = _statements(settle=True)


def reserve(session: Runner, policy: Policy | Row[Any], ledger_id: str, epsilon: int, delta: int) -> None:
    """Reserve ``epsilon``/``delta`` units on the policy, the lifetime account and the ledger.

    Inside the write transaction that read and locked the three rows, after an allowing
    decision; the database's CHECK constraints refuse any reservation beyond the policy's grant
    as a last line of defence.
    """
    if (
        policy.epsilon_spent + policy.epsilon_reserved + epsilon > policy.epsilon_granted
        or policy.delta_spent + policy.delta_reserved + delta > policy.delta_granted
    ):
        raise InternalError("reservation beyond the granted budget refused")
    _move(session, _RESERVE, policy.id, policy.organisation, ledger_id, epsilon, delta)


def settle(  # noqa: PLR0917 - the three account keys and the two amounts
    session: Runner, policy_id: str, organisation: str, ledger_id: str, epsilon: int, delta: int
) -> None:
    """Turn a reservation into a charge (released answer, or failed execution: data was read)."""
    _move(session, _SETTLE, policy_id, organisation, ledger_id, epsilon, delta)


def _move(  # noqa: PLR0917 - as settle, with the statements to run
    session: Runner,
    statements: tuple[Update, Update, Update],
    policy_id: str,
    organisation: str,
    ledger_id: str,
    epsilon: int,
    delta: int,
) -> None:
    on_policy, on_ledger, on_account = statements
    amounts = {"b_epsilon": epsilon, "b_delta": delta}
    session.execute(on_policy, {"b_id": policy_id, **amounts})
    session.execute(on_ledger, {"b_id": ledger_id, **amounts})
    session.execute(on_account, {"b_ledger_id": ledger_id, "b_organisation": organisation, **amounts})


_INSERT_QUERY = insert(_QUERIES)
_READ_QUERY = select(_QUERIES).where(_QUERIES.c.id == bindparam("b_id"))
_UPDATE_QUERY = update(_QUERIES).where(_QUERIES.c.id == bindparam("b_id"))


def insert_query(session: Runner, values: dict[str, Any]) -> None:
    """Insert a query record (one pre-built statement: no ORM flush on the hot path)."""
    session.execute(_INSERT_QUERY, values)


def query_record(session: Runner, query_id: str) -> Row[Any] | None:
    """The stored record of a query (a row of ``queries``), if any."""
    return session.execute(_READ_QUERY, {"b_id": query_id}).one_or_none()


def finish_query(session: Runner, query_id: str, **values: Any) -> None:
    """Set the final fields of a query record (status, finished_at, ...)."""
    session.execute(_UPDATE_QUERY, {"b_id": query_id, **values})


def budget_view(policy: Policy, ledger: Ledger, account: LedgerAccount | None) -> BudgetView:
    """The budget view of a policy charged to ``ledger`` (``account``: the organisation's there)."""
    if account is None:
        account = LedgerAccount(
            ledger_id=ledger.id,
            organisation=policy.organisation,
            epsilon_spent=0,
            epsilon_reserved=0,
            delta_spent=0,
            delta_reserved=0,
        )
    state = budget_state(policy, ledger, account)
    return BudgetView(
        policy_id=policy.id,
        organisation=policy.organisation,
        dataset=policy.dataset,
        status=policy.status,
        ledger=ledger.id,
        epsilon_granted=epsilon_float(policy.epsilon_granted),
        epsilon_spent=epsilon_float(policy.epsilon_spent),
        epsilon_reserved=epsilon_float(policy.epsilon_reserved),
        epsilon_remaining=epsilon_float(state.epsilon_remaining),
        delta_granted=delta_float(policy.delta_granted),
        delta_spent=delta_float(policy.delta_spent),
        delta_reserved=delta_float(policy.delta_reserved),
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


_READ_REPLAY = select(_REPLAY.c.query_id, _REPLAY.c.answer).where(
    _REPLAY.c.organisation == bindparam("b_organisation"),
    _REPLAY.c.dataset == bindparam("b_dataset"),
    _REPLAY.c.dataset_version == bindparam("b_version"),
    _REPLAY.c.fingerprint == bindparam("b_fingerprint"),
)
_INSERT_REPLAY = insert(_REPLAY)


class StoredRelease(NamedTuple):
    """A stored release kept for replay: the original query and its answer (canonical JSON)."""

    query_id: str
    answer: str


def find_replay(
    session: Runner, organisation: str, dataset: str, version: str, fingerprint: str
) -> StoredRelease | None:
    """The stored release (from ``replay_cache``) of an identical query by the organisation."""
    key = {
        "b_organisation": organisation,
        "b_dataset": dataset,
        "b_version": version,
        "b_fingerprint": fingerprint,
    }
    row = session.execute(_READ_REPLAY, key).one_or_none()
    return None if row is None else StoredRelease(row.query_id, row.answer)


class ReplayMemo:
    """A per-process, size-bounded memo of stored releases (least recently used dropped first).

    Stored releases never change once written (the first release of a fingerprint wins), so a hit
    is always what the database holds; a miss falls back to the database.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[tuple[str, str, str, str], StoredRelease] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str, str]) -> StoredRelease | None:
        """The memoised release of ``(organisation, dataset, version, fingerprint)``, if any."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[str, str, str, str], entry: StoredRelease) -> None:
        """Remember a release read from the database."""
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)


def store_replay(session: Runner, query: Row[Any], answer: dict[str, Any], now: datetime) -> None:
    """Keep a released answer for replay (the first release of a fingerprint wins)."""
    if query.organisation is None or query.dataset_version is None or query.fingerprint is None:
        raise InternalError("only a planned query of an organisation can be replayed")
    if find_replay(session, query.organisation, query.dataset, query.dataset_version, query.fingerprint):
        return
    session.execute(
        _INSERT_REPLAY,
        {
            "organisation": query.organisation,
            "dataset": query.dataset,
            "dataset_version": query.dataset_version,
            "fingerprint": query.fingerprint,
            "query_id": query.id,
            "answer": canonical_json(answer).decode("utf-8"),
            "created_at": now,
        },
    )


def replayed_answer(entry: StoredRelease | Row[Any]) -> dict[str, Any]:
    """The stored answer of a replay entry."""
    answer = json.loads(entry.answer)
    if not isinstance(answer, dict):
        raise InternalError("a replay cache entry is not a JSON object")
    return answer


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
