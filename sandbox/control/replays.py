"""Stored releases replayed for identical queries: the replay cache, its per-process memo, and
the answer of a replay.

An organisation that repeats a query (same dataset version, same normalised plan) gets the first
release again at no cost, on any replica: the release is stored in the same transaction as the
charge's settlement, and the first release of a fingerprint wins.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, Insert, Row, bindparam, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from sandbox.errors import InternalError
from sandbox.store.db import Runner
from sandbox.store.models import Base, ReplayEntry

_REPLAY = Base.metadata.tables[ReplayEntry.__tablename__]
# the first release of a fingerprint wins, also when two replicas settle identical queries at once
_INSERT_REPLAY: dict[str, Insert] = {
    "postgresql": postgresql.insert(_REPLAY).on_conflict_do_nothing(),
    "sqlite": sqlite.insert(_REPLAY).on_conflict_do_nothing(),
}


ReleaseKey = tuple[str, str, str, str]  # (organisation, dataset, dataset version, fingerprint)
_KEY = (_REPLAY.c.organisation, _REPLAY.c.dataset, _REPLAY.c.dataset_version, _REPLAY.c.fingerprint)
_READ_REPLAYS = select(*_KEY, _REPLAY.c.query_id, _REPLAY.c.answer).where(
    tuple_(*_KEY).in_(bindparam("b_keys", expanding=True))
)


class StoredRelease(NamedTuple):
    """A stored release kept for replay: the original query and its answer (canonical JSON)."""

    query_id: str
    answer: str


def find_replay(runner: Runner, key: ReleaseKey) -> StoredRelease | None:
    """The stored release (from ``replay_cache``) of an identical query by the organisation."""
    return find_replays(runner, [key]).get(key)


def find_replays(runner: Runner, keys: list[ReleaseKey]) -> dict[ReleaseKey, StoredRelease]:
    """The stored releases of many keys at once (one read)."""
    if not keys:
        return {}
    rows = runner.execute(_READ_REPLAYS, {"b_keys": sorted(set(keys))}).all()
    return {
        (row.organisation, row.dataset, row.dataset_version, row.fingerprint): StoredRelease(
            row.query_id, row.answer
        )
        for row in rows
    }


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


def replay_row(key: ReleaseKey, query_id: str, answer: str, now: datetime) -> dict[str, Any]:
    """The ``replay_cache`` row keeping a released answer (its canonical JSON) under ``key``."""
    organisation, dataset, version, fingerprint = key
    return {
        "organisation": organisation,
        "dataset": dataset,
        "dataset_version": version,
        "fingerprint": fingerprint,
        "query_id": query_id,
        "answer": answer,
        "created_at": now,
    }


def store_replays(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Keep released answers for replay (``replay_row``s; the first release of a key wins)."""
    if rows:
        connection.execute(_INSERT_REPLAY[connection.dialect.name], rows)


def replayed_answer(entry: StoredRelease | Row[Any]) -> dict[str, Any]:
    """The stored answer of a replay entry."""
    answer = json.loads(entry.answer)
    if not isinstance(answer, dict):
        raise InternalError("a replay cache entry is not a JSON object")
    return answer
