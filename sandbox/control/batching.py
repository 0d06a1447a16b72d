"""Group commit for the query path: the admissions and closings that many threads of one process ask
for at the same moment are written in one transaction, with one commit.

Each caller hands a job to the process's writer threads and waits. A free writer takes every job
queued (up to ``MAX_BATCH``), runs them all in one write transaction, commits, and wakes their
callers; while it waits on the database, the next batch gathers in the queue. When
a batch fails as a whole (a row changed under it, an error in one job), it is rolled back and each
of its jobs runs again alone, so one job's failure is its own; a batch that failed on a connection the
server had dropped, before its commit, runs once more on a fresh one. An idle process pays one thread
hand-off per write; a busy one shares each commit between many queries.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

MAX_BATCH = 256
WRITERS = 1  # batches in flight per process: one writer makes the largest batches (measured: 2 are slower)


class Job:
    """One caller's part of a batch: the batch sets ``result`` (or the error) before it wakes it."""

    def __init__(self) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Event()

    def finish(self) -> None:
        """Wake the caller with ``result``."""
        self._done.set()

    def fail(self, error: BaseException) -> None:
        """Wake the caller with ``error``."""
        self.error = error
        self._done.set()

    def wait(self) -> None:
        """Block until the batch holding this job has committed or failed."""
        self._done.wait()


J = TypeVar("J", bound=Job)


class GroupCommit(Generic[J]):
    """The writer threads of one process: ``submit`` a job and get it back done."""

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[Connection]],
        run: Callable[[Connection, Sequence[J]], None],
    ) -> None:
        self._transaction = transaction
        self._run = run
        self._queue: queue.SimpleQueue[J | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def submit(self, job: J) -> J:
        """Run ``job`` in the next batch; re-raise its error, or return it with its ``result``."""
        self._ensure_thread()
        self._queue.put(job)
        job.wait()
        if job.error is not None:
            raise job.error
        return job

    def close(self) -> None:
        """Stop the writer threads once the jobs queued before this call are done."""
        with self._lock:
            threads, self._threads = [t for t in self._threads if t.is_alive()], []
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join(timeout=60)

    def _ensure_thread(self) -> None:
        if self._threads and all(thread.is_alive() for thread in self._threads):
            return
        with self._lock:
            if not self._threads or not all(t.is_alive() for t in self._threads):  # none yet, or a fork
                self._queue = queue.SimpleQueue()
                self._threads = [
                    threading.Thread(target=self._loop, name=f"sandbox-group-commit-{n}", daemon=True)
                    for n in range(WRITERS)
                ]
                for thread in self._threads:
                    thread.start()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            while len(jobs) < MAX_BATCH:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._commit(jobs)
                    return
                jobs.append(job)
            self._commit(jobs)

    def _commit(self, jobs: list[J], *, fresh: bool = False) -> None:
        ran = False
        try:
            with self._transaction() as connection:
                self._run(connection, jobs)
                ran = True
        except Exception as error:
            if not ran and not fresh and isinstance(error, DBAPIError) and error.connection_invalidated:
                # a pooled connection the server had dropped (it restarted, or ended the session):
                # nothing was committed, and the pool has replaced its stale connections
                self._commit(jobs, fresh=True)
            elif len(jobs) > 1:
                for job in jobs:
                    self._commit([job])
            else:
                jobs[0].fail(error)
            return
        for job in jobs:
            job.finish()
