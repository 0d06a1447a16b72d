"""Run generated SQL on a dataset's DuckDB file: read-only, locked down, time-limited.

The whitelist and the regenerated SQL are the first line of defence; these settings are the
second: no external access (files, network, extensions), configuration locked after open, bounded
memory and threads, and a wall-clock limit per statement (interrupt). Errors never carry DuckDB's
text, which may echo data values.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from pathlib import Path
from typing import Any

import duckdb

from sandbox.errors import QueryFailed

log = logging.getLogger(__name__)


def lockdown_config(memory_limit: str, threads: int) -> dict[str, Any]:
    """DuckDB configuration of analyst-query connections."""
    return {
        "access_mode": "READ_ONLY",
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "memory_limit": memory_limit,
        "threads": threads,
        "lock_configuration": True,
    }


class Watchdog:
    """One thread that interrupts statements past their deadline (no thread per query)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, duckdb.DuckDBPyConnection]] = []
        self._live: set[int] = set()
        self._counter = itertools.count()
        self._condition = threading.Condition()
        threading.Thread(target=self._loop, name="duckdb-watchdog", daemon=True).start()

    def watch(self, cursor: duckdb.DuckDBPyConnection, timeout_s: float) -> int:
        """Interrupt ``cursor`` after ``timeout_s`` unless ``release``d first."""
        ticket = next(self._counter)
        with self._condition:
            heapq.heappush(self._heap, (time.monotonic() + timeout_s, ticket, cursor))
            self._live.add(ticket)
            self._condition.notify()
        return ticket

    def release(self, ticket: int) -> None:
        """The statement finished: do not interrupt it."""
        with self._condition:
            self._live.discard(ticket)

    def _loop(self) -> None:
        with self._condition:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._condition.wait()
                    continue
                deadline, ticket, cursor = self._heap[0]
                delay = deadline - time.monotonic()
                if delay > 0:
                    self._condition.wait(delay)
                    continue
                heapq.heappop(self._heap)
                self._live.discard(ticket)
                cursor.interrupt()


WATCHDOG = Watchdog()


class LockedDatabase:
    """One read-only DuckDB instance per dataset version; a cursor per statement."""

    def __init__(self, path: Path, *, memory_limit: str, threads: int) -> None:
        self._connection = duckdb.connect(
            str(path), read_only=True, config=lockdown_config(memory_limit, threads)
        )

    def run(self, sql: str, timeout_s: float) -> list[tuple[Any, ...]]:
        """All rows of ``sql``; ``QueryFailed`` on timeout or any execution error."""
        cursor = self._connection.cursor()
        ticket = WATCHDOG.watch(cursor, timeout_s)
        try:
            return cursor.execute(sql).fetchall()
        except duckdb.InterruptException:
            raise QueryFailed(
                f"The query exceeded the time limit of {timeout_s:g} s and was stopped; "
                "add filters or group by fewer keys.",
                code="query.timeout",
            ) from None
        except duckdb.Error as error:
            log.warning("query execution failed: %s", type(error).__name__)
            raise QueryFailed(
                "The query could not be executed (resource limit or internal error); "
                "no data-dependent detail is reported.",
                code="query.execution_failed",
            ) from None
        finally:
            WATCHDOG.release(ticket)
            cursor.close()

    def close(self) -> None:
        """Close the instance."""
        self._connection.close()
