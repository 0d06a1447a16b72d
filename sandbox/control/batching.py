"""Group commit for the query path: the admissions and closings that many threads of one process ask
for at the same moment are written in one transaction, with one commit.

Leader and followers, with no writer thread of its own: a caller that finds no batch in flight
leads — it takes every job queued (its own first, up to ``MAX_BATCH``), runs them in one write
transaction, commits and wakes their callers. Callers that arrive meanwhile queue and wait; when the
batch is done, the first of them leads the next batch with everything queued by then. So an idle
process writes in the caller's thread, with no hand-off, and a busy one shares each commit between
many queries, one batch in flight at a time.

When a batch fails as a whole (a row changed under it, an error in one job), it is rolled back and
each of its jobs runs again alone, so one job's failure is its own; a batch that failed on a
connection the server had dropped, before its commit, runs once more on a fresh one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

MAX_BATCH = 256


class Job:
    """One caller's part of a batch: the batch sets ``result`` (or the error) before it wakes it."""

    def __init__(self) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self._leads = False
        self._woken = threading.Event()

    def finish(self) -> None:
        """Wake the caller with ``result``."""
        self.done = True
        self._woken.set()

    def fail(self, error: BaseException) -> None:
        """Wake the caller with ``error``."""
        self.error = error
        self.finish()

    def lead(self) -> None:
        """Wake the caller to lead the next batch (which holds this job)."""
        self._leads = True
        self._woken.set()

    def wait(self) -> bool:
        """Block until the job is done (False) or its caller is to lead the next batch (True)."""
        self._woken.wait()
        self._woken.clear()
        leads, self._leads = self._leads, False
        return leads and not self.done


J = TypeVar("J", bound=Job)


class GroupCommit(Generic[J]):
    """The query-path writes of one process: ``submit`` a job and get it back done."""

    def __init__(
        self,
        transaction: Callable[[Sequence[J]], AbstractContextManager[Connection]],
        run: Callable[[Connection, Sequence[J]], None],
    ) -> None:
        self._transaction = transaction
        self._run = run
        self._lock = threading.Lock()
        self._queued: list[J] = []
        self._leading = False
        self._idle = threading.Event()
        self._idle.set()

    def submit(self, job: J) -> J:
        """Run ``job`` in the next batch; re-raise its error, or return it with its ``result``."""
        with self._lock:
            self._queued.append(job)
            leads = not self._leading
            self._leading = True
            self._idle.clear()
        while not job.done:
            if leads:
                self._lead()
            else:
                leads = job.wait()
        if job.error is not None:
            raise job.error
        return job

    def close(self, timeout: float = 60.0) -> None:
        """Wait (up to ``timeout`` seconds) until no batch is in flight or queued."""
        self._idle.wait(timeout)

    def _lead(self) -> None:
        """Commit one batch of the queue's head, then hand the lead to the next caller queued."""
        with self._lock:
            jobs = self._queued[:MAX_BATCH]
            del self._queued[:MAX_BATCH]
        try:
            self._commit(jobs)
        except BaseException as error:  # an interrupt: no caller of this batch may wait forever
            for job in jobs:
                if not job.done:
                    job.fail(error)
            raise
        finally:
            with self._lock:
                if self._queued:
                    self._queued[0].lead()
                else:
                    self._leading = False
                    self._idle.set()

    def _commit(self, jobs: list[J], *, fresh: bool = False) -> None:
        ran = False
        try:
            with self._transaction(jobs) as connection:
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
