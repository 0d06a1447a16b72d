"""Charging a query to its three accounts: the policy, the organisation's lifetime account on the
dataset's ledger, and the ledger (all organisations) — in exact integer units, at admission.

Two ways, one result. ``admission_rows`` + ``PendingCharges`` is the query path: one unlocked
read of everything the decisions of a batch need, then one conditional ``UPDATE`` per row charged
(the batch's amounts summed) whose ``WHERE`` re-checks the grant and every cap, and that the
policy's revision (its terms and status) is still the one decided on. If any matches no row,
something changed since the read: the batch is rolled back (``Changed``) and decided again, alone,
then with the rows locked (``charge_locked``). Rows are locked in the order policies → ledgers →
accounts, each kind sorted by key, as governance writes lock them, so no two writers ever wait on
each other in a cycle.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from sqlalchemy import BigInteger, CursorResult, Result, Row, and_, bindparam, select, tuple_, update

from sandbox.budget import Allowance, BudgetState
from sandbox.control.ledger import budget_state
from sandbox.errors import InternalError
from sandbox.policies.models import PolicyStatus
from sandbox.store.db import Runner
from sandbox.store.models import Base, Dataset, Ledger, LedgerAccount, Policy

_POLICIES = Base.metadata.tables[Policy.__tablename__]
_DATASETS = Base.metadata.tables[Dataset.__tablename__]
_LEDGERS = Base.metadata.tables[Ledger.__tablename__]
_ACCOUNTS = Base.metadata.tables[LedgerAccount.__tablename__]

_EPSILON = bindparam("b_epsilon", type_=BigInteger)
_DELTA = bindparam("b_delta", type_=BigInteger)
_ORG_EPSILON_CAP = bindparam("b_org_epsilon_cap", type_=BigInteger)
_ORG_DELTA_CAP = bindparam("b_org_delta_cap", type_=BigInteger)

# the active policy, its dataset's ledger and the organisation's account there: one read
_ADMISSION = (
    select(
        _POLICIES,
        _DATASETS.c.ledger_id,
        _LEDGERS.c.epsilon_cap.label("ledger_epsilon_cap"),
        _LEDGERS.c.delta_cap.label("ledger_delta_cap"),
        _LEDGERS.c.organisation_epsilon_cap,
        _LEDGERS.c.organisation_delta_cap,
        _LEDGERS.c.epsilon_spent.label("ledger_epsilon_spent"),
        _LEDGERS.c.delta_spent.label("ledger_delta_spent"),
        _ACCOUNTS.c.epsilon_cap.label("account_epsilon_cap"),
        _ACCOUNTS.c.delta_cap.label("account_delta_cap"),
        _ACCOUNTS.c.epsilon_spent.label("account_epsilon_spent"),
        _ACCOUNTS.c.delta_spent.label("account_delta_spent"),
    )
    .select_from(
        _POLICIES.join(_DATASETS, _DATASETS.c.name == _POLICIES.c.dataset)
        .join(_LEDGERS, _LEDGERS.c.id == _DATASETS.c.ledger_id)
        .join(
            _ACCOUNTS,
            and_(
                _ACCOUNTS.c.ledger_id == _LEDGERS.c.id, _ACCOUNTS.c.organisation == _POLICIES.c.organisation
            ),
        )
    )
    .where(
        tuple_(_POLICIES.c.organisation, _POLICIES.c.dataset).in_(bindparam("b_pairs", expanding=True)),
        _POLICIES.c.status == PolicyStatus.ACTIVE.value,
    )
)

_CHARGE_POLICY = (
    update(_POLICIES)
    .where(
        _POLICIES.c.id == bindparam("b_policy"),
        _POLICIES.c.revision == bindparam("b_revision"),
        _POLICIES.c.status == PolicyStatus.ACTIVE.value,
        _POLICIES.c.epsilon_spent + _EPSILON <= _POLICIES.c.epsilon_granted,
        _POLICIES.c.delta_spent + _DELTA <= _POLICIES.c.delta_granted,
    )
    .values(epsilon_spent=_POLICIES.c.epsilon_spent + _EPSILON, delta_spent=_POLICIES.c.delta_spent + _DELTA)
)
_CHARGE_LEDGER = (
    update(_LEDGERS)
    .where(
        _LEDGERS.c.id == bindparam("b_ledger"),
        (_LEDGERS.c.epsilon_cap.is_(None)) | (_LEDGERS.c.epsilon_spent + _EPSILON <= _LEDGERS.c.epsilon_cap),
        (_LEDGERS.c.delta_cap.is_(None)) | (_LEDGERS.c.delta_spent + _DELTA <= _LEDGERS.c.delta_cap),
        # the per-organisation default caps the account's check below relies on are unchanged
        _LEDGERS.c.organisation_epsilon_cap.is_not_distinct_from(
            bindparam("b_org_epsilon_cap", type_=BigInteger)
        ),
        _LEDGERS.c.organisation_delta_cap.is_not_distinct_from(
            bindparam("b_org_delta_cap", type_=BigInteger)
        ),
    )
    .values(epsilon_spent=_LEDGERS.c.epsilon_spent + _EPSILON, delta_spent=_LEDGERS.c.delta_spent + _DELTA)
)
_CHARGE_ACCOUNT = (
    update(_ACCOUNTS)
    .where(
        _ACCOUNTS.c.ledger_id == bindparam("b_ledger"),
        _ACCOUNTS.c.organisation == bindparam("b_organisation"),
        _ACCOUNTS.c.epsilon_cap.is_not_distinct_from(bindparam("b_account_epsilon_cap", type_=BigInteger)),
        _ACCOUNTS.c.delta_cap.is_not_distinct_from(bindparam("b_account_delta_cap", type_=BigInteger)),
        _ACCOUNTS.c.epsilon_spent + _EPSILON <= bindparam("b_epsilon_ceiling", type_=BigInteger),
        _ACCOUNTS.c.delta_spent + _DELTA <= bindparam("b_delta_ceiling", type_=BigInteger),
    )
    .values(epsilon_spent=_ACCOUNTS.c.epsilon_spent + _EPSILON, delta_spent=_ACCOUNTS.c.delta_spent + _DELTA)
)
_NO_CAP = 2**62  # above any reachable total: amounts are checked against 2^62 at grant time


class Changed(Exception):
    """A row an unlocked decision read changed before the charge: decide again."""


class AdmissionRow:
    """What ``admission_rows`` read for one (organisation, dataset): the policy row, its ledger and
    the budget state it decides on."""

    def __init__(self, row: Row[Any]) -> None:
        self.row = row
        self.ledger_id: str = row.ledger_id
        self.account_key = (row.ledger_id, row.organisation)
        self.state: BudgetState = budget_state(row, _Ledger(row), _Account(row))


class _Ledger:
    """The ledger columns of an admission row under the names ``budget_state`` reads."""

    def __init__(self, row: Row[Any]) -> None:
        self.epsilon_cap = row.ledger_epsilon_cap
        self.delta_cap = row.ledger_delta_cap
        self.organisation_epsilon_cap = row.organisation_epsilon_cap
        self.organisation_delta_cap = row.organisation_delta_cap
        self.epsilon_spent = row.ledger_epsilon_spent
        self.delta_spent = row.ledger_delta_spent


class _Account:
    """The account columns of an admission row under the names ``budget_state`` reads."""

    def __init__(self, row: Row[Any]) -> None:
        self.epsilon_cap = row.account_epsilon_cap
        self.delta_cap = row.account_delta_cap
        self.epsilon_spent = row.account_epsilon_spent
        self.delta_spent = row.account_delta_spent


def admission_rows(runner: Runner, pairs: set[tuple[str, str]]) -> dict[tuple[str, str], AdmissionRow]:
    """For each (organisation, dataset): its active policy with the dataset's ledger and the
    organisation's lifetime account there, read without locks in one statement. A pair is missing
    when any of them is (the locked path creates or reports them)."""
    rows = runner.execute(_ADMISSION, {"b_pairs": sorted(pairs)}).all()
    return {(row.organisation, row.dataset): AdmissionRow(row) for row in rows}


class PendingCharges:
    """The charges a batch decided on, summed per row, added to what was read, and applied with
    conditional updates."""

    def __init__(self) -> None:
        self._policies: dict[str, tuple[AdmissionRow, int, int]] = {}
        self._ledgers: dict[str, tuple[AdmissionRow, int, int]] = {}
        self._accounts: dict[tuple[str, str], tuple[AdmissionRow, int, int]] = {}

    def state(self, read: AdmissionRow) -> BudgetState:
        """The budget state of ``read`` with this batch's earlier charges added."""
        base = read.state
        policy = self._policies.get(read.row.id, (read, 0, 0))
        ledger = self._ledgers.get(read.ledger_id, (read, 0, 0))
        account = self._accounts.get(read.account_key, (read, 0, 0))
        return replace(
            base,
            epsilon_used=base.epsilon_used + policy[1],
            delta_used=base.delta_used + policy[2],
            lifetime_epsilon=_more(base.lifetime_epsilon, account[1]),
            lifetime_delta=_more(base.lifetime_delta, account[2]),
            dataset_epsilon=_more(base.dataset_epsilon, ledger[1]),
            dataset_delta=_more(base.dataset_delta, ledger[2]),
        )

    def add(self, read: AdmissionRow, epsilon: int, delta: int) -> None:
        """Add one query's charge."""
        self._policies[read.row.id] = _plus(self._policies.get(read.row.id), read, epsilon, delta)
        self._ledgers[read.ledger_id] = _plus(self._ledgers.get(read.ledger_id), read, epsilon, delta)
        self._accounts[read.account_key] = _plus(self._accounts.get(read.account_key), read, epsilon, delta)

    def apply(self, runner: Runner) -> bool:
        """Charge every row with its summed amounts if nothing decided on changed; whether it did.
        On ``False`` some rows may be charged already: roll the transaction back."""
        for _, (read, epsilon, delta) in sorted(self._policies.items()):
            values = {
                "b_policy": read.row.id,
                "b_revision": read.row.revision,
                "b_epsilon": epsilon,
                "b_delta": delta,
            }
            if _rows(runner.execute(_CHARGE_POLICY, values)) != 1:
                return False
        for _, (read, epsilon, delta) in sorted(self._ledgers.items()):
            values = {
                "b_ledger": read.ledger_id,
                "b_org_epsilon_cap": read.row.organisation_epsilon_cap,
                "b_org_delta_cap": read.row.organisation_delta_cap,
                "b_epsilon": epsilon,
                "b_delta": delta,
            }
            if _rows(runner.execute(_CHARGE_LEDGER, values)) != 1:
                return False
        for _, (read, epsilon, delta) in sorted(self._accounts.items()):
            epsilon_cap, delta_cap = read.state.lifetime_epsilon.cap, read.state.lifetime_delta.cap
            values = {
                "b_ledger": read.ledger_id,
                "b_organisation": read.row.organisation,
                "b_account_epsilon_cap": read.row.account_epsilon_cap,
                "b_account_delta_cap": read.row.account_delta_cap,
                "b_epsilon_ceiling": _NO_CAP if epsilon_cap is None else epsilon_cap,
                "b_delta_ceiling": _NO_CAP if delta_cap is None else delta_cap,
                "b_epsilon": epsilon,
                "b_delta": delta,
            }
            if _rows(runner.execute(_CHARGE_ACCOUNT, values)) != 1:
                return False
        return True


def _plus(
    found: tuple[AdmissionRow, int, int] | None, read: AdmissionRow, epsilon: int, delta: int
) -> tuple[AdmissionRow, int, int]:
    return (read, epsilon, delta) if found is None else (found[0], found[1] + epsilon, found[2] + delta)


def _more(allowance: Allowance, units: int) -> Allowance:
    return Allowance(allowance.cap, allowance.used + units)


def _rows(result: Result[Any]) -> int:
    """How many rows an UPDATE matched."""
    return cast("CursorResult[Any]", result).rowcount


_ADD = {
    table.name: update(table).values(
        epsilon_spent=table.c.epsilon_spent + _EPSILON, delta_spent=table.c.delta_spent + _DELTA
    )
    for table in (_POLICIES, _LEDGERS, _ACCOUNTS)
}
_CHARGE_LOCKED = (
    _ADD[_POLICIES.name].where(_POLICIES.c.id == bindparam("b_policy")),
    _ADD[_LEDGERS.name].where(_LEDGERS.c.id == bindparam("b_ledger")),
    _ADD[_ACCOUNTS.name].where(
        _ACCOUNTS.c.ledger_id == bindparam("b_ledger"),
        _ACCOUNTS.c.organisation == bindparam("b_organisation"),
    ),
)


def charge_locked(
    runner: Runner, policy: Policy | Row[Any], ledger_id: str, epsilon: int, delta: int
) -> None:
    """Charge the three accounts inside the write transaction that locked them and allowed the
    query; the database's CHECK constraints refuse a charge beyond the grant as a last line."""
    if (
        policy.epsilon_spent + epsilon > policy.epsilon_granted
        or policy.delta_spent + delta > policy.delta_granted
    ):
        raise InternalError("a charge beyond the granted budget refused")
    values = {
        "b_policy": policy.id,
        "b_ledger": ledger_id,
        "b_organisation": policy.organisation,
        "b_epsilon": epsilon,
        "b_delta": delta,
    }
    for statement in _CHARGE_LOCKED:
        runner.execute(statement, values)
