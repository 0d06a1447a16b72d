"""Group commit for the query path: the admissions and closings that many threads of one process
ask for at the same moment are written in one transaction, with one commit.

Each caller hands a job to the process's writer thread and waits. The thread takes every job
queued (up to ``MAX_BATCH``), runs them all in one write transaction, commits, and wakes their
callers. When a batch fails as a whole (a row changed under it, an error in one job), it is rolled
back and each of its jobs runs again alone, so one job's failure is its own. An idle process pays
one thread hand-off per write; a busy one shares each commit between many queries.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection

MAX_BATCH = 256


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
    """The writer thread of one process: ``submit`` a job and get it back done."""

    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[Connection]],
        run: Callable[[Connection, Sequence[J]], None],
    ) -> None:
        self._transaction = transaction
        self._run = run
        self._queue: queue.SimpleQueue[J | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, job: J) -> J:
        """Run ``job`` in the next batch; re-raise its error, or return it with its ``result``."""
        self._ensure_thread()
        self._queue.put(job)
        job.wait()
        if job.error is not None:
            raise job.error
        return job

    def close(self) -> None:
        """Stop the writer thread once the jobs queued before this call are done."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout=60)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # none yet, or lost in a fork
                self._queue = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._loop, name="sandbox-group-commit", daemon=True)
                self._thread.start()

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

    def _commit(self, jobs: list[J]) -> None:
        try:
            with self._transaction() as connection:
                self._run(connection, jobs)
        except Exception as error:
            if len(jobs) > 1:
                for job in jobs:
                    self._commit([job])
            else:
                jobs[0].fail(error)
            return
        for job in jobs:
            job.finish()
