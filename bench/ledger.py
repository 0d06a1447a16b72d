"""Benchmark: the ledger alone (no DuckDB) — charged queries per second through PostgreSQL.

Usage: ``python bench/ledger.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
[--writers 1,2,4,8] [--seconds 5] [--threads 32] [--baseline 7403756]``

Each run creates a fresh database beside the one ``--url`` names (dropped afterwards), migrates
it, registers one dataset and grants one policy per writer organisation through the public
``ControlPlane`` API. Then 1, 2, 4 and 8 writer processes (each its own ``ControlPlane``, as
gateway replicas are, with ``--threads`` threads: the concurrent requests of one replica) charge
queries for ``--seconds``: every query is ``begin_query`` (decide and charge, with its audit
event) followed by ``complete_query`` (record the answer and keep it for replay) — what the gateway
does around each fresh query, without planning or DuckDB. The database keeps PostgreSQL's default
``synchronous_commit = on``, as production does.

Before each writer count, the same workload runs on the single-row baseline: the ledger of git
revision ``--baseline`` (every write serialised on the audit chain's head row, two transactions
per query), from that revision's own code, so both are measured on the machine as it is now. The
baseline runs with at most 4 threads per writer, its own default: with more, its threads outnumber
its connection pool and time out (more threads would not help it: every write waits on one row).

Printed: charged queries/s per writer count, the baseline's, the ratio, and the ratio to the
issue's target (2,000/s on the 2-core machine). Checks afterwards: for every policy the ledger's
spend equals the charges counted by the writers exactly; the audit chain (with every pending event
sealed) and the stored state verify. Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from tempfile import TemporaryDirectory, mkdtemp
from uuid import uuid4

import psycopg
from sqlalchemy.engine import make_url

from sandbox.catalog.models import (
    Classification,
    ColumnRole,
    ColumnSpec,
    DatasetMetadata,
    DatasetRecord,
    StoredColumn,
    StoredTable,
    TableSpec,
)
from sandbox.control import ControlPlane, QueryTicket
from sandbox.principals import Principal, Role
from sandbox.query.summary import AggregateKind, QuerySummary
from sandbox.settings import Settings
from sandbox.store import migrate

TARGET_QPS = 2_000.0
EPSILON = 0.001
GRANT = 1_000_000.0  # never the limit here
ANSWER = {"columns": ["n"], "rows": [[1]]}
OPERATOR = Principal("bench-operator", frozenset({Role.OPERATOR}))
OWNER = Principal("bench-owner", frozenset({Role.OWNER}), "bench-owners")


def dataset() -> DatasetRecord:
    """A registered-looking dataset record (the ledger never opens its file)."""
    columns = [
        ColumnSpec(name="person_id", role=ColumnRole.PRIVACY_UNIT),
        ColumnSpec(name="age", role=ColumnRole.MEASURE, lower=0, upper=100),
    ]
    metadata = DatasetMetadata(
        dataset="ledger_bench",
        title="ledger benchmark",
        owner=OWNER.organisation or "",
        classification=Classification.GENERAL,
        tables=[TableSpec(name="people", source="people.parquet", privacy_unit="person_id", columns=columns)],
    )
    digest = hashlib.sha256(b"ledger-bench").hexdigest()
    stored = StoredTable(
        name="people",
        physical="t_people",
        columns=[StoredColumn(name=c.name, duckdb_type="BIGINT", physical=c.name) for c in columns],
        source_sha256=digest,
        content_sha256=digest,
    )
    return DatasetRecord(
        metadata=metadata,
        tables=[stored],
        version=digest,
        registration_id="reg_" + digest[:32],
        registered_at=datetime.now(UTC),
        database_file="data.duckdb",
    )


def summary(record: DatasetRecord) -> QuerySummary:
    """A fresh query (a new fingerprint every time: never a replay)."""
    text = f"SELECT COUNT(*) FROM people -- {uuid4().hex}"
    return QuerySummary(
        dataset=record.name,
        dataset_version=record.registration_id,
        table="people",
        columns=frozenset({"age"}),
        aggregates=frozenset({AggregateKind.COUNT}),
        group_by=(),
        epsilon=EPSILON,
        delta=0.0,
        normalized_sql=text,
        fingerprint=hashlib.sha256(text.encode()).hexdigest(),
    )


def analyst(index: int) -> Principal:
    return Principal(f"bench-analyst-{index}", frozenset({Role.ANALYST}), f"bench-org-{index}")


def prepare(settings: Settings, writers: int) -> None:
    """Users, the dataset and one policy per writer organisation."""
    record = dataset()
    with ControlPlane(settings) as control:
        control.add_user(OWNER.name, [Role.OWNER], OWNER.organisation, actor=OPERATOR.name)
        control.record_registration(OPERATOR, record)
        for index in range(writers):
            principal = analyst(index)
            control.add_user(principal.name, [Role.ANALYST], principal.organisation, actor=OPERATOR.name)
            request = control.request_access(
                principal,
                record,
                purpose="ledger benchmark",
                columns=["age"],
                epsilon=GRANT,
                delta=0.0,
                valid_until=datetime.now(UTC) + timedelta(days=1),
            )
            control.approve(OWNER, request.id, record, max_epsilon_per_query=1.0)


def writer(  # noqa: PLR0917 - a multiprocessing target takes positional arguments
    url: str,
    home: str,
    index: int,
    threads: int,
    seconds: float,
    start: Barrier,
    results: Queue[tuple[int, int]],
) -> None:
    """Charge queries for ``seconds`` with ``threads`` threads; put the number charged."""
    record = dataset()
    principal = analyst(index)
    control = ControlPlane(Settings(home=Path(home), db_url=url))
    start.wait()
    deadline = time.monotonic() + seconds

    def loop() -> int:
        charged = 0
        while time.monotonic() < deadline:
            ticket = control.begin_query(
                principal, record, summary(record), sql="SELECT COUNT(*) FROM people"
            )
            assert isinstance(ticket, QueryTicket)
            control.complete_query(ticket, ANSWER)
            charged += 1
        return charged

    with ThreadPoolExecutor(threads) as pool:
        total = sum(pool.map(lambda _: loop(), range(threads)))
    control.close()
    results.put((index, total))


@dataclass
class Run:
    synchronous_commit: str
    writers: int
    charged: int
    seconds: float
    ok: bool

    @property
    def qps(self) -> float:
        return self.charged / self.seconds


def admin(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def one_run(url: str, writers: int, threads: int, seconds: float, synchronous_commit: str) -> Run:
    """A fresh database, ``writers`` processes charging for ``seconds``, then the checks."""
    name = f"sbx_ledger_{uuid4().hex[:12]}"
    with psycopg.connect(admin(url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
        connection.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = {synchronous_commit}')
    database = make_url(url).set(database=name).render_as_string(hide_password=False)
    home = mkdtemp(prefix="sbx-ledger-")
    try:
        migrate.upgrade(database)
        settings = Settings(home=Path(home), db_url=database)
        prepare(settings, writers)
        context = multiprocessing.get_context("spawn")
        start, results = context.Barrier(writers + 1), context.Queue()
        processes = [
            context.Process(target=writer, args=(database, home, i, threads, seconds, start, results))
            for i in range(writers)
        ]
        for process in processes:
            process.start()
        start.wait()
        began = time.monotonic()
        counts = dict(results.get() for _ in processes)
        elapsed = time.monotonic() - began
        for process in processes:
            process.join()
        ok = check(settings, counts)
        return Run(synchronous_commit, writers, sum(counts.values()), max(elapsed, seconds), ok)
    finally:
        with psycopg.connect(admin(url), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check(settings: Settings, counts: dict[int, int]) -> bool:
    """Spend per organisation equals its counted charges; the audit chain verifies."""
    ok = True
    with ControlPlane(settings) as control:
        for index, charged in counts.items():
            (budget,) = control.budget(analyst(index))
            if round(budget.epsilon_spent / EPSILON) != charged:
                organisation = analyst(index).organisation
                print(f"  spend of {organisation}: {budget.epsilon_spent} != {charged} x {EPSILON}")
                ok = False
        report = control.verify_audit()
        if not report.ok:
            print(f"  audit chain does not verify: {report}")
            ok = False
    return ok


BASELINE_REV = "7403756"  # the last ledger that put every write on the chain-head row
BASELINE_THREADS = 4  # its own default: with more, threads outnumber its connection pool and time out


def baseline_qps(  # noqa: PLR0917 - the run's parameters, passed on
    url: str, writers: int, threads: int, seconds: float, synchronous_commit: str, rev: str
) -> float | None:
    """Charged queries/s of the single-row ledger (``rev``), run now on the same machine: that
    revision's code and its own copy of this benchmark, in a subprocess; ``None`` if unavailable."""
    repo = Path(__file__).resolve().parents[1]
    with TemporaryDirectory(prefix="sbx-ledger-baseline-") as folder:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", rev, "sandbox", "bench"], capture_output=True, check=False
        )
        if archive.returncode != 0:
            print(f"  baseline {rev} not available here: {archive.stderr.decode().strip()[:200]}")
            return None
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        command = [sys.executable, f"{folder}/bench/ledger.py", "--url", url, "--writers", str(writers)]
        command += ["--threads", str(min(threads, BASELINE_THREADS)), "--seconds", str(seconds)]
        command += ["--synchronous-commit", synchronous_commit]
        try:
            run = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": folder},
                check=False,
                timeout=seconds * 4 + 180,
            )
        except subprocess.TimeoutExpired:
            print(f"  baseline run with {writers} writer(s) did not finish")
            return None
    for line in run.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == synchronous_commit and fields[1] == str(writers):
            return float(fields[3])
    print(f"  baseline run failed: {(run.stderr or run.stdout).strip()[-300:]}")
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url",
        default=os.environ.get(
            "SANDBOX_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--writers", default="1,2,4,8")
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--synchronous-commit",
        default="on",
        help="PostgreSQL synchronous_commit (on: production; off: without the WAL flush wait)",
    )
    parser.add_argument(
        "--baseline", default=BASELINE_REV, help="git revision of the single-row ledger to compare ('': none)"
    )
    args = parser.parse_args()
    sync = args.synchronous_commit
    rows = []
    for n in (int(n) for n in args.writers.split(",")):
        base = (
            baseline_qps(args.url, n, args.threads, args.seconds, sync, args.baseline)
            if args.baseline
            else None
        )
        rows.append((one_run(args.url, n, args.threads, args.seconds, sync), base))
    load = os.getloadavg()[0]
    print(
        f"ledger: charged queries/s through PostgreSQL ({os.cpu_count()} cores, {args.threads} threads per "
        f"writer process (baseline: {min(args.threads, BASELINE_THREADS)}), synchronous_commit={sync}, "
        f"load average {load:.1f})"
    )
    print(f"{'writers':>7} {'baseline':>9} {'q/s':>8} {'vs baseline':>12} {'vs target':>10}  checks")
    for run, base in rows:
        ratio = f"{run.qps / base:>11.1f}x" if base else f"{'-':>12}"
        shown = f"{base:>9.0f}" if base else f"{'-':>9}"
        print(
            f"{run.writers:>7} {shown} {run.qps:>8.0f} {ratio} {run.qps / TARGET_QPS:>9.2f}x  "
            f"{'ok' if run.ok else 'FAILED'}"
        )
    best = max(rows, key=lambda row: row[0].qps)
    print(
        f"best: {best[0].qps:.0f} charged q/s with {best[0].writers} writer process(es), "
        f"{best[0].qps / TARGET_QPS:.2f}x the {TARGET_QPS:.0f} q/s target"
        + (f", {best[0].qps / best[1]:.1f}x the single-row baseline ({args.baseline})" if best[1] else "")
    )
    return 0 if all(run.ok for run, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
