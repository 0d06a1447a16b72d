"""Work done in other OS processes (forked), each with its own ControlPlane on the shared store."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from control_support import ANALYST_A, make_dataset, make_summary

from sandbox.control import ControlPlane, QueryTicket
from sandbox.errors import PolicyDenied
from sandbox.settings import Settings

DATASET = make_dataset()


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
