"""What every use case of the control plane shares: the state store, the clock, visibility scopes,
cursor pages and the rows a dataset's budget lives in."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Connection, Select, and_, false, or_, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from sandbox.catalog.models import DatasetRecord
from sandbox.control.batching import GroupCommit
from sandbox.control.upkeep import Upkeep
from sandbox.errors import Forbidden, InvalidRequest
from sandbox.principals import Principal, Role
from sandbox.settings import Settings
from sandbox.store import migrate
from sandbox.store.db import Store
from sandbox.store.models import Dataset, Ledger, LedgerAccount

MAX_LIST = 10_000
T = TypeVar("T")


def utc_now() -> datetime:
    """The current aware UTC time."""
    return datetime.now(UTC)


class Core:
    """The state store and clock of a control plane (``ControlPlane`` adds the use cases).

    ``create=True`` upgrades the database to the current schema first; otherwise a database that
    is not at the current schema is refused (``StoreOutdatedError``: run ``sandbox db upgrade``).
    ``clock`` returns the current aware time (tests pass their own).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        create: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        url = settings.state_db_url
        if create:
            migrate.upgrade(url)
        else:
            migrate.ensure_current(url)
        self._store = Store(url)
        self._clock = clock or utc_now
        self._upkeep = Upkeep(self._store, self._now, settings.abandoned_reservation_s / 4)
        self._writes: GroupCommit[Any] = GroupCommit(
            lambda jobs: self._hot(flush=self._flushes(jobs)), self._write_batch
        )

    def close(self) -> None:
        """Finish queued writes, seal pending audit events, stop the background threads and
        release the database connections."""
        self._writes.close()
        self._upkeep.close()
        self._store.dispose()

    def _write_batch(self, connection: Connection, jobs: Sequence[Any]) -> None:
        """Run one group-commit batch of query-path jobs (the control plane's use cases define it)."""
        raise NotImplementedError

    def _flushes(self, jobs: Sequence[Any]) -> bool:
        """Whether a group-commit batch must be flushed to disk before its callers go on."""
        raise NotImplementedError

    @contextmanager
    def _hot(self, *, flush: bool = True) -> Iterator[Connection]:
        """A write transaction of the query path: its events are ``chain.defer``-red, which links
        them in the same transaction on SQLite and leaves them to the upkeep thread on PostgreSQL."""
        self._upkeep.start()
        with self._store.hot_connection(flush=flush) as connection:
            yield connection
        if not self._store.is_sqlite:
            self._upkeep.wake()

    def seal_pending(self) -> int:
        """Link every pending audit event into the chain now (before reading or verifying it)."""
        return 0 if self._store.is_sqlite else self._upkeep.seal_all()

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    @property
    def checkpoint_log(self) -> Path:
        """The append-only file every checkpoint is also written to (keep a copy off this host)."""
        return self.settings.home_dir / "audit" / "checkpoints.jsonl"


def scope(
    principal: Principal,
    organisation: InstrumentedAttribute[Any],
    owner: InstrumentedAttribute[Any],
) -> ColumnElement[bool]:
    """Rows the principal may see: operator all; analyst own organisation's; owner own datasets'."""
    if principal.has(Role.OPERATOR):
        return true()
    clauses: list[ColumnElement[bool]] = []
    if principal.organisation and principal.has(Role.ANALYST):
        clauses.append(organisation == principal.organisation)
    if principal.organisation and principal.has(Role.OWNER):
        clauses.append(owner == principal.organisation)
    return or_(*clauses) if clauses else false()


def require_operator(principal: Principal, what: str) -> None:
    """``Forbidden`` (``auth.operator_only``) unless the principal is an operator."""
    if not principal.has(Role.OPERATOR):
        raise Forbidden(f"only operators may {what}", code="auth.operator_only")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, newest first, and the cursor of the next page (``None``: last page)."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(*key: Any) -> str:
    """An opaque cursor naming the last row of a page (its sort key)."""
    return base64.urlsafe_b64encode(json.dumps(key, default=str).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, size: int) -> list[Any] | None:
    """The sort key a cursor names; ``InvalidRequest`` (``request.invalid_cursor``) if malformed."""
    if cursor is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != size or not all(_cursor_part(part) for part in key):
        raise InvalidRequest(
            "the cursor is not one this service issued: pass next_cursor from the previous page",
            code="request.invalid_cursor",
        )
    return key


def _cursor_part(part: Any) -> bool:
    """A sort-key part a store can compare: a short text or a 64-bit integer."""
    if isinstance(part, str):
        return len(part) <= 256
    return isinstance(part, int) and not isinstance(part, bool) and -(2**63) <= part < 2**63


def page_size(limit: int) -> int:
    """``limit`` clamped to 1..MAX_LIST."""
    return max(1, min(limit, MAX_LIST))


def keyset_page(  # noqa: PLR0917 - the statement, its two sort columns and the page
    session: Session,
    statement: Select[Any],
    time: InstrumentedAttribute[datetime],
    key: InstrumentedAttribute[str],
    limit: int,
    cursor: str | None,
) -> tuple[list[Any], str | None]:
    """One page of ``statement``, newest first by (``time``, ``key``), after the cursor's row; and
    the cursor of the next page (``None`` on the last)."""
    after = decode_cursor(cursor, 2)
    if after is not None:
        moment = datetime.fromisoformat(str(after[0]))
        statement = statement.where(or_(time < moment, and_(time == moment, key < str(after[1]))))
    size = page_size(limit)
    rows = list(session.scalars(statement.order_by(time.desc(), key.desc()).limit(size)))
    if len(rows) < size:
        return rows, None
    last = rows[-1]
    return rows, encode_cursor(getattr(last, time.key).isoformat(), getattr(last, key.key))


def dataset_row(session: Session, record: DatasetRecord) -> Dataset:
    """The dataset's row (locked), created with its own ledger from the catalogue record when missing."""
    row = session.get(Dataset, record.name, with_for_update=True)
    if row is None:
        row = Dataset(
            name=record.name,
            owner=record.metadata.owner,
            classification=record.metadata.classification.value,
            version=record.version,
            ledger_id=record.name,
            new_version_budget="carry",
        )
        ledger_row(session, record.name)
        session.add(row)
        session.flush()
    return row


def ledger_row(session: Session, ledger_id: str) -> Ledger:
    """A ledger (locked), created empty when missing."""
    row = session.get(Ledger, ledger_id, with_for_update=True)
    if row is None:
        row = Ledger(id=ledger_id, epsilon_spent=0, delta_spent=0)
        session.add(row)
        session.flush()
    return row


def account_row(session: Session, ledger_id: str, organisation: str) -> LedgerAccount:
    """An organisation's lifetime account on a ledger (locked), created empty when missing."""
    row = session.get(LedgerAccount, (ledger_id, organisation), with_for_update=True)
    if row is None:
        row = LedgerAccount(ledger_id=ledger_id, organisation=organisation, epsilon_spent=0, delta_spent=0)
        session.add(row)
        session.flush()
    return row
