"""Run generated SQL on a dataset's DuckDB file: read-only, locked down, time-limited.

The whitelist and the regenerated SQL are the first line of defence; these settings are the
second: no external access (files, network, extensions), configuration locked after open, bounded
memory and threads, and a wall-clock limit per statement (interrupt). Errors never carry DuckDB's
text, which may echo data values.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from sandbox.errors import QueryFailed
from sandbox.query.whitelist import DIALECT

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
    """One thread that interrupts statements past their deadline (no thread per query).

    Watching a statement costs a lock and a dictionary entry: the thread is woken only when a
    deadline comes before the time it already planned to wake at (idle, it looks every
    ``IDLE_WAKE_S``), so a query does not pay for a thread switch. Past its deadline a statement
    is interrupted every ``REPEAT_S`` until it is released: an interrupt that reaches the cursor
    before the statement has started (a loaded machine, a tiny limit) has no effect.
    """

    IDLE_WAKE_S = 0.25
    REPEAT_S = 0.01  # an interrupt that lands before the statement starts is lost: repeat it

    def __init__(self) -> None:
        self._deadlines: dict[int, tuple[float, duckdb.DuckDBPyConnection]] = {}
        self._counter = itertools.count()
        self._wake_at = 0.0
        self._condition = threading.Condition()
        threading.Thread(target=self._loop, name="duckdb-watchdog", daemon=True).start()

    def watch(self, cursor: duckdb.DuckDBPyConnection, timeout_s: float) -> int:
        """Interrupt ``cursor`` after ``timeout_s`` unless ``release``d first."""
        ticket = next(self._counter)
        deadline = time.monotonic() + timeout_s
        with self._condition:
            self._deadlines[ticket] = (deadline, cursor)
            if deadline < self._wake_at:
                self._condition.notify()
        return ticket

    def release(self, ticket: int) -> None:
        """The statement finished: do not interrupt it."""
        with self._condition:
            self._deadlines.pop(ticket, None)

    def _loop(self) -> None:
        with self._condition:
            while True:
                now = time.monotonic()
                for ticket, (deadline, cursor) in list(self._deadlines.items()):
                    if deadline <= now:
                        self._deadlines[ticket] = (now + self.REPEAT_S, cursor)
                        cursor.interrupt()
                earliest = min((d for d, _ in self._deadlines.values()), default=math.inf)
                self._wake_at = min(earliest, now + self.IDLE_WAKE_S)
                self._condition.wait(self._wake_at - now)


WATCHDOG = Watchdog()


class LockedDatabase:
    """One read-only DuckDB instance per dataset version; one cursor per thread, reused.

    A DuckDB connection must not run two statements at once, and opening a cursor per statement
    costs more than many small statements: each thread keeps its own cursor. An interrupt that
    reaches a cursor after its statement ended has no effect on the next one.
    """

    def __init__(self, path: Path, *, memory_limit: str, threads: int) -> None:
        self._connection = duckdb.connect(
            str(path), read_only=True, config=lockdown_config(memory_limit, threads)
        )
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._row_counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def run(self, sql: str, timeout_s: float) -> list[tuple[Any, ...]]:
        """All rows of ``sql``; ``QueryFailed`` on timeout or any execution error."""
        cursor = self._cursor()
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

    def row_count(self, table: str, timeout_s: float) -> int:
        """The exact number of rows of a stored table, counted once per database (the file of a
        dataset version never changes): an input to noise like any other exact aggregate."""
        count = self._row_counts.get(table)
        if count is None:
            sql = exp.select(exp.Count(this=exp.Star())).from_(exp.table_(table, quoted=True))
            ((count,),) = self.run(sql.sql(dialect=DIALECT), timeout_s)
            with self._lock:
                self._row_counts[table] = count
        return count

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor: duckdb.DuckDBPyConnection | None = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._lock:
                cursor = self._connection.cursor()
                self._cursors.append(cursor)
            self._local.cursor = cursor
        return cursor

    def close(self) -> None:
        """Close every cursor and the instance."""
        with self._lock:
            for cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
        self._connection.close()
