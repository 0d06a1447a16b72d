"""Engine and transactions of the state store (SQLite with WAL, or PostgreSQL).

On SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (the database write lock,
waited for up to ``busy_timeout``), so writers are serialised. On PostgreSQL a governance write
transaction first locks the single audit chain-head row ``FOR UPDATE`` (governance writers are
serialised with each other and with the sealer), while a ``hot_connection`` (queries) takes no
global lock: it changes only the rows it names, each charge a conditional ``UPDATE`` whose
``WHERE`` re-checks the limit, so a check-then-debit can never race another writer, across
threads and across processes.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from sandbox.store.models import AuditHead

SQLITE_BUSY_TIMEOUT_MS = 60_000
IDLE_PING_S = 0.05  # a PostgreSQL connection idle longer than this is pinged before reuse
IMMEDIATE_OPTION = "sandbox_begin_immediate"

Runner = Session | Connection
"""What the hot-path statements run on: an ORM session or a plain Core connection."""


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout, foreign keys and explicit BEGINs."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # LIFO: a busy process keeps reusing its most recent connections, which need no ping
        return _ping_when_idle(create_engine(url, pool_size=5, max_overflow=10, pool_use_lifo=True))
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, pool_size=10, max_overflow=40
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(IMMEDIATE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _ping_when_idle(engine: Engine) -> Engine:
    """Ping a pooled connection before reuse when it sat idle over ``IDLE_PING_S`` (a restarted or
    failed-over server has dropped it; the pool then opens a new one): a busy replica's writers,
    which reuse connections at once, skip the round trip that ``pool_pre_ping`` would add to every
    checkout, while one that waited through an outage never hands a client a dead connection."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        record.info["pinged"] = idle_since is not None and time.monotonic() - idle_since > IDLE_PING_S
        if not record.info["pinged"]:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError("the pooled connection is gone") from error
        if not alive:
            raise DisconnectionError("the pooled connection is gone")

    return engine


def _synchronous(connection: Connection, level: str) -> None:
    """Set SQLite's ``synchronous`` on the driver's connection (outside a transaction, no BEGIN)."""
    try:
        connection.connection.driver_connection.execute(f"PRAGMA synchronous={level}")  # type: ignore[union-attr]
    except Exception:
        connection.invalidate()  # never hand a relaxed connection to the next writer
        raise


def _alive(connection: Connection) -> None:
    """Ping ``connection`` (unless its checkout just did); one the server dropped is replaced
    (SQLAlchemy then also discards the pool's older connections) before the caller's first
    statement."""
    if connection.connection.info.get("pinged"):
        return
    try:
        connection.exec_driver_sql("SELECT 1")
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        connection.rollback()  # the next statement opens a new connection


class WriterQueue:
    """Queue SQLite writers of all threads and processes on a lock file before ``BEGIN IMMEDIATE``.

    SQLite's busy handler makes a waiting writer poll with growing sleeps; a blocking ``flock``
    (plus a thread lock, since ``flock`` does not separate threads sharing a descriptor) wakes the
    next writer as soon as the lock is free. The kernel releases it when a process dies.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread_lock = threading.Lock()
        self._descriptor: int | None = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            if self._descriptor is None:
                self._descriptor = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._descriptor, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._descriptor is not None:
                fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        """Close the lock file."""
        with self._thread_lock:
            if self._descriptor is not None:
                os.close(self._descriptor)
                self._descriptor = None


class Store:
    """One state store: an engine, read sessions and serialised write transactions."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._immediate = self.engine.execution_options(**{IMMEDIATE_OPTION: True})
        self._write = sessionmaker(self._immediate, expire_on_commit=False)
        database = self.engine.url.database
        self._writer_queue: AbstractContextManager[Any] = (
            WriterQueue(Path(f"{database}-writer.lock"))
            if self.is_sqlite and database and database != ":memory:"
            else nullcontext()
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session in one transaction (a consistent snapshot on SQLite)."""
        with self._read() as session:
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A Core connection for the hot paths' reads (one transaction, rolled back on exit). On
        PostgreSQL it is pinged first, so a read never fails on a connection the server dropped."""
        with self.engine.connect() as connection:
            if not self.is_sqlite:
                _alive(connection)
            yield connection

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only session on one consistent snapshot (``REPEATABLE READ`` on PostgreSQL)."""
        with self._read() as session:
            if not self.is_sqlite:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    @contextmanager
    def write_transaction(self) -> Iterator[Session]:
        """A write transaction holding the store's write lock from its first statement; commits on exit."""
        with self._writer_queue, self._write() as session, session.begin():
            if not self.is_sqlite:
                session.execute(select(AuditHead.id).where(AuditHead.id == 1).with_for_update())
            yield session

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """``write_transaction`` on a plain Core connection (no ORM session): the hot paths' writes."""
        with self._writer_queue, self._immediate.connect() as connection, connection.begin():
            if not self.is_sqlite:
                connection.execute(select(AuditHead.id).where(AuditHead.id == 1).with_for_update())
            yield connection

    @contextmanager
    def hot_connection(self, *, flush: bool = True) -> Iterator[Connection]:
        """A write transaction of the query path on a Core connection: on PostgreSQL without the
        chain-head lock (see the module docstring); on SQLite as ``write_connection``.

        ``flush=False`` commits without waiting for this commit's own flush to disk: durable against
        a crash of this process at once, against an OS crash or power loss with the next flushed
        commit (the log is flushed in commit order, so such a loss can only drop a suffix of these
        commits). For writes whose loss a later sweep repairs."""
        if not self.is_sqlite:
            with self.engine.connect() as connection, connection.begin():
                if not flush:
                    connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
                yield connection
            return
        with self._writer_queue, self._immediate.connect() as connection:
            if not flush:
                _synchronous(connection, "NORMAL")  # SQLite refuses to change it inside a transaction
            try:
                with connection.begin():
                    yield connection
            finally:
                if not flush:
                    _synchronous(connection, "FULL")

    def dispose(self) -> None:
        """Close every pooled connection (and the writer lock file)."""
        self.engine.dispose()
        if isinstance(self._writer_queue, WriterQueue):
            self._writer_queue.close()
