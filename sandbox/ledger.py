"""The privacy-budget ledger: exact units, budget views, query tickets and the query record.

Amounts are exact integers: epsilon in units of 1e-9, delta in units of 1e-15. Values come in as
floats and are converted through ``Decimal(str(x))``; charges round up, grants round down, so the
ledger can never hand out more than was granted.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import replace
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict
from sqlalchemy import BigInteger, BindParameter, Row, Table, Update, bindparam, insert, select, update

from sandbox.audit.chain import canonical_json
from sandbox.errors import InternalError
from sandbox.policies.models import BudgetState, PolicyView
from sandbox.store.db import Runner
from sandbox.store.models import Base, Dataset, Policy, Query, ReplayEntry

_POLICIES = Base.metadata.tables[Policy.__tablename__]
_DATASETS = Base.metadata.tables[Dataset.__tablename__]
_QUERIES = Base.metadata.tables[Query.__tablename__]
_REPLAY = Base.metadata.tables[ReplayEntry.__tablename__]

EPSILON_SCALE = 10**9
DELTA_SCALE = 10**15
MAX_EPSILON = 1_000_000.0


def _units(value: float, scale: int, *, up: bool) -> int:
    exact = Decimal(str(value)) * scale
    return int(exact.to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR))


def epsilon_units(value: float, *, up: bool) -> int:
    """Epsilon as integer units of 1e-9 (``up=True`` for charges, ``False`` for grants and caps)."""
    return _units(value, EPSILON_SCALE, up=up)


def delta_units(value: float, *, up: bool) -> int:
    """Delta as integer units of 1e-15 (``up=True`` for charges, ``False`` for grants and caps)."""
    return _units(value, DELTA_SCALE, up=up)


def epsilon_decimal(units: int) -> Decimal:
    """Exact epsilon of ``units``."""
    return Decimal(units) / EPSILON_SCALE


def delta_decimal(units: int) -> Decimal:
    """Exact delta of ``units``."""
    return Decimal(units) / DELTA_SCALE


def epsilon_float(units: int) -> float:
    """Epsilon of ``units`` as a float (for JSON views; exact for validated ranges)."""
    return float(epsilon_decimal(units))


def delta_float(units: int) -> float:
    """Delta of ``units`` as a float (for JSON views; exact for validated ranges)."""
    return float(delta_decimal(units))


def epsilon_text(units: int) -> str:
    """Exact epsilon of ``units`` as a plain decimal string (audit payloads, messages)."""
    return _plain(epsilon_decimal(units))


def delta_text(units: int) -> str:
    """Exact delta of ``units`` as a plain decimal string (audit payloads, messages)."""
    return _plain(delta_decimal(units))


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"


class QueryStatus(StrEnum):
    """States of a recorded query."""

    RESERVED = "reserved"  # budget reserved, result not yet released (or the process died)
    ANSWERED = "answered"
    REPLAYED = "replayed"  # answered from the replay cache at no cost
    REJECTED = "rejected"
    FAILED = "failed"  # accepted, data read, execution failed: the charge is kept


class BudgetView(BaseModel):
    """One policy's budget as its organisation (or the dataset owner) sees it."""

    model_config = ConfigDict(frozen=True)

    policy_id: str
    organisation: str
    dataset: str
    status: str
    epsilon_granted: float
    epsilon_spent: float
    epsilon_reserved: float
    epsilon_remaining: float
    delta_granted: float
    delta_spent: float
    delta_reserved: float
    delta_remaining: float
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


def budget_state(policy: Policy | Row[Any], dataset: Dataset | None) -> BudgetState:
    """The amounts the policy engine checks a query against (reservations count as used).

    Without the dataset row the dataset-wide cap is left out (enough for replays, which cost nothing).
    """
    state = BudgetState(
        epsilon_granted=policy.epsilon_granted,
        epsilon_used=policy.epsilon_spent + policy.epsilon_reserved,
        delta_granted=policy.delta_granted,
        delta_used=policy.delta_spent + policy.delta_reserved,
    )
    if dataset is None:
        return state
    return replace(
        state,
        dataset_epsilon_cap=dataset.epsilon_cap,
        dataset_epsilon_used=dataset.epsilon_spent + dataset.epsilon_reserved,
        dataset_delta_cap=dataset.delta_cap,
        dataset_delta_used=dataset.delta_spent + dataset.delta_reserved,
    )


def _shift(table: Table, key: str, *, settle: bool) -> Update:
    """UPDATE moving amounts into ``*_reserved`` (reserve) or from it into ``*_spent`` (settle)."""
    changes: dict[str, Any] = {}
    for amount in ("epsilon", "delta"):
        units: BindParameter[int] = bindparam(f"b_{amount}", type_=BigInteger)
        if settle:
            changes[f"{amount}_reserved"] = table.c[f"{amount}_reserved"] - units
            changes[f"{amount}_spent"] = table.c[f"{amount}_spent"] + units
        else:
            changes[f"{amount}_reserved"] = table.c[f"{amount}_reserved"] + units
    return update(table).where(table.c[key] == bindparam("b_key")).values(changes)


_RESERVE = (_shift(_POLICIES, "id", settle=False), _shift(_DATASETS, "name", settle=False))
_SETTLE = (_shift(_POLICIES, "id", settle=True), _shift(_DATASETS, "name", settle=True))


def reserve(session: Runner, policy: Policy | Row[Any], dataset: Dataset, epsilon: int, delta: int) -> None:
    """Reserve ``epsilon``/``delta`` units on the policy and the dataset (after an allowing decision).

    Inside the write transaction that read ``policy``; the database's CHECK constraints refuse any
    reservation beyond the grant as a last line of defence.
    """
    if (
        policy.epsilon_spent + policy.epsilon_reserved + epsilon > policy.epsilon_granted
        or policy.delta_spent + policy.delta_reserved + delta > policy.delta_granted
    ):
        raise InternalError("reservation beyond the granted budget refused")
    _move(session, _RESERVE, policy_id=policy.id, dataset=dataset.name, epsilon=epsilon, delta=delta)


def settle(session: Runner, policy_id: str, dataset: str, epsilon: int, delta: int) -> None:
    """Turn a reservation into a charge (released answer, or failed execution: data was read)."""
    _move(session, _SETTLE, policy_id=policy_id, dataset=dataset, epsilon=epsilon, delta=delta)


def _move(
    session: Runner,
    statements: tuple[Update, Update],
    *,
    policy_id: str,
    dataset: str,
    epsilon: int,
    delta: int,
) -> None:
    on_policy, on_dataset = statements
    amounts = {"b_epsilon": epsilon, "b_delta": delta}
    session.execute(on_policy, {"b_key": policy_id, **amounts})
    session.execute(on_dataset, {"b_key": dataset, **amounts})


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


def budget_view(policy: Policy) -> BudgetView:
    """The budget view of a policy."""
    remaining_epsilon = max(policy.epsilon_granted - policy.epsilon_spent - policy.epsilon_reserved, 0)
    remaining_delta = max(policy.delta_granted - policy.delta_spent - policy.delta_reserved, 0)
    return BudgetView(
        policy_id=policy.id,
        organisation=policy.organisation,
        dataset=policy.dataset,
        status=policy.status,
        epsilon_granted=epsilon_float(policy.epsilon_granted),
        epsilon_spent=epsilon_float(policy.epsilon_spent),
        epsilon_reserved=epsilon_float(policy.epsilon_reserved),
        epsilon_remaining=epsilon_float(remaining_epsilon),
        delta_granted=delta_float(policy.delta_granted),
        delta_spent=delta_float(policy.delta_spent),
        delta_reserved=delta_float(policy.delta_reserved),
        delta_remaining=delta_float(remaining_delta),
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
