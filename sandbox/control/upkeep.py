"""Each control plane's background thread: it links pending audit events into the chain moments
after they commit, and keeps this replica's heartbeat so the abandoned-query sweep can tell a
query that is still running from one whose process died.

Sealing is group commit: every query transaction wakes the thread after its commit, and one
sealing transaction links all events pending by then, so the chain head is taken once per batch
instead of once per event. Several replicas may seal at once; they queue on the chain head and
the later ones find less (or nothing) to do. A replica that dies leaves its events pending; the
next seal of any replica links them.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import bindparam, delete, insert, update

from sandbox.audit import chain
from sandbox.store.db import Store
from sandbox.store.models import Base, Replica

log = logging.getLogger(__name__)
_REPLICAS = Base.metadata.tables[Replica.__tablename__]
_BEAT = update(_REPLICAS).where(_REPLICAS.c.id == bindparam("b_id")).values(last_seen=bindparam("b_now"))
_JOIN = insert(_REPLICAS)
_LEAVE = delete(_REPLICAS).where(_REPLICAS.c.id == bindparam("b_id"))
SEAL_BACKSTOP_S = 1.0  # also seal this often without a wake-up (events a dead replica left pending)
SEAL_GATHER_S = 0.02  # after a wake-up, let more commits arrive so one seal links them all
RETRY_S = 0.5  # after a failed round (the state store away)


class Upkeep:
    """The sealer and heartbeat of one control plane; started by its first query."""

    def __init__(self, store: Store, now: Callable[[], datetime], heartbeat_s: float) -> None:
        self.replica_id = f"r_{secrets.token_hex(12)}"
        self._store = store
        self._now = now
        self._heartbeat_s = heartbeat_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Record this replica (its first heartbeat) and start the thread, once."""
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None:
                return
            with self._store.hot_connection() as connection:
                connection.execute(_JOIN, self._record(self._now()))
            thread = threading.Thread(target=self._run, name="sandbox-upkeep", daemon=True)
            thread.start()
            self._thread = thread

    def wake(self) -> None:
        """Ask for a seal soon (after a commit that deferred events)."""
        self._wake.set()

    def seal_all(self) -> int:
        """Link every pending event into the chain now; how many were linked."""
        total = 0
        while True:
            with self._store.write_connection() as connection:
                linked = chain.seal(connection)
            total += linked
            if linked < chain.SEAL_BATCH:
                return total

    def close(self) -> None:
        """Stop the thread, seal what is pending and remove this replica's record (best effort)."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        self._wake.set()
        thread.join(timeout=30)
        self._thread = None
        try:
            self.seal_all()
            with self._store.hot_connection() as connection:
                connection.execute(_LEAVE, {"b_id": self.replica_id})
        except Exception:  # the store is away: the events stay pending for another replica
            log.warning("could not seal pending audit events at shutdown", exc_info=True)

    def _run(self) -> None:
        next_beat = time.monotonic() + self._heartbeat_s
        while not self._stop.is_set():
            if self._wake.wait(timeout=min(SEAL_BACKSTOP_S, max(0.0, next_beat - time.monotonic()))):
                self._stop.wait(SEAL_GATHER_S)
            self._wake.clear()
            try:
                if not self._store.is_sqlite:  # on SQLite chain.defer links each query's events at once
                    self.seal_all()
                if time.monotonic() >= next_beat:
                    self._beat()
                    next_beat = time.monotonic() + self._heartbeat_s
            except Exception:  # the store is away: retried on the next round
                log.warning("audit sealing or heartbeat failed; retrying", exc_info=True)
                self._stop.wait(RETRY_S)

    def _beat(self) -> None:
        now = self._now()
        with self._store.hot_connection() as connection:
            if connection.execute(_BEAT, {"b_id": self.replica_id, "b_now": now}).rowcount == 0:
                connection.execute(_JOIN, self._record(now))

    def _record(self, now: datetime) -> dict[str, object]:
        return {
            "id": self.replica_id,
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "started_at": now,
            "last_seen": now,
        }
