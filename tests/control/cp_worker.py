"""Work done in other OS processes, each with its own ControlPlane on the shared store.

The processes come from a fork server (a fresh interpreter that has imported this module), never
from a fork of pytest's own process: a thread of that process (another test's gateway or sealer)
may hold SQLite's or a library's lock at the instant of the fork, and the child would wait on it
forever. They are daemons and are killed when the test ends, so a stuck child fails its test
instead of keeping pytest from exiting.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from control_support import ANALYST_A, make_dataset, make_summary

from sandbox.control import ControlPlane, QueryTicket
from sandbox.errors import PolicyDenied
from sandbox.settings import Settings

DATASET = make_dataset()
CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload([__name__])


@contextmanager
def started(
    target: Callable[..., None], arguments: Sequence[tuple[object, ...]]
) -> Iterator[Sequence[BaseProcess]]:
    """One daemon process per argument tuple, running ``target``; killed if still alive at the end."""
    workers = [CONTEXT.Process(target=target, args=args, daemon=True) for args in arguments]
    for worker in workers:
        worker.start()
    try:
        yield workers
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
            worker.join(timeout=30)


def attempt(cp: ControlPlane, epsilon: float) -> str:
    """One query: ``answered`` or the denial's rule id."""
    try:
        outcome = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=epsilon), sql="SELECT 1")
    except PolicyDenied as error:
        return error.rule or error.code
    if not isinstance(outcome, QueryTicket):
        return "replayed"
    cp.complete_query(outcome, {"columns": ["n"], "rows": [[1]]})
    return "answered"


def run_queries(  # noqa: PLR0917 - a multiprocessing target takes positional arguments
    url: str, home: str, count: int, epsilon: float, start: Barrier, results: Queue[list[str]]
) -> None:
    """Open a ControlPlane, wait for the other processes, run ``count`` concurrent queries."""
    cp = ControlPlane(Settings(home=Path(home), db_url=url))
    start.wait()
    with ThreadPoolExecutor(count) as pool:
        outcomes = list(pool.map(lambda _: attempt(cp, epsilon), range(count)))
    cp.close()
    results.put(outcomes)


def reserve_and_hang(url: str, home: str, epsilon: float, report: Connection) -> None:
    """Reserve one query, send its id, wait to be killed."""
    cp = ControlPlane(Settings(home=Path(home), db_url=url))
    ticket = cp.begin_query(ANALYST_A, DATASET, make_summary(DATASET, epsilon=epsilon), sql="SELECT 1")
    report.send(ticket.query_id)
    time.sleep(600)


def sweep(url: str, home: str, start: Barrier, results: Queue[int]) -> None:
    """Wait for the other sweepers, then settle every abandoned query; report how many."""
    plane = ControlPlane(Settings(home=Path(home), db_url=url))
    start.wait()
    results.put(plane.settle_abandoned(timedelta(0)))
    plane.close()
