"""PostgreSQL restarted under load: three ``sandbox serve`` replicas over one state store while
``pg_ctl restart -m fast`` ends every session, stops the server and starts it again.

The shared server on 127.0.0.1:5432 serves others' tests and is never restarted: this test runs
its own PostgreSQL (``initdb`` into a temporary folder, trust authentication, a free loopback
port; as the ``postgres`` OS user when run as root), and is skipped, saying why, when the server
binaries are not installed or cannot be run here.

The load (60 clients: fresh queries of three organisations, replays, refusals, on every replica)
runs before, during and after the restart. Checks: clients get an answer or a refusal (200, 403),
or while the store is away 503 ``store.unavailable`` with ``Retry-After`` — never a 500, never a
dropped connection; every replica answers again after the restart without being restarted, its
heartbeat and audit sealer running again by themselves (the pending events linked by the
replicas, not by the checks); then no query stays reserved, no policy is overspent, every charge
and every audit event is recorded exactly once (``cluster_support.check_ledger``) and the chain
verifies.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from glob import glob
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cluster_support import ADMIN, CLIENTS, REPLAYED_SQL, Cluster, check_ledger, cluster, load

from sandbox.control import ControlPlane
from sandbox.demo.hub import free_port
from sandbox.store import migrate

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

GRANT = 1.5  # 30 fresh queries per organisation: left when the store restarts, often spent by the end
ABANDONED_S = 8.0  # above a query's latency and the outage (heartbeats pause while the store is away)
BOUNDED_S = 30.0  # for recoveries: a replica answering, pending events sealed, reservations closed


class PrivatePostgres:
    """A PostgreSQL server of this test's own: a data folder, a loopback port, a socket folder."""

    def __init__(self, bindir: Path, folder: Path, run_as: list[str]) -> None:
        self.bindir, self.folder, self.run_as = bindir, folder, run_as
        self.data, self.log, self.output = folder / "data", folder / "server.log", folder / "pg_ctl.out"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *arguments: str) -> None:
        # output to a file, not a pipe: a server started by pg_ctl would hold a pipe open
        command = [*self.run_as, str(self.bindir / tool), *arguments]
        with self.output.open("ab") as output:
            done = subprocess.run(command, stdout=output, stderr=output, timeout=120, check=False)
        assert done.returncode == 0, f"{tool} failed: {_tail(self.output)}{_tail(self.log)}"

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        # a throwaway server: it need not survive a power loss (fsync off)
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-o", options)

    def restart(self) -> None:
        """End every session, stop, start again (same options) and wait until it accepts connections."""
        self._run("pg_ctl", "restart", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w")
        deadline = time.monotonic() + BOUNDED_S
        while True:
            try:
                with psycopg.connect(self.admin_url, connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, f"PostgreSQL did not come back: {_tail(self.log)}"
                time.sleep(0.1)

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])


def _server_binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(done.stdout.strip()))
    versions = glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in versions), key=lambda p: _version(p.parent.name), reverse=True)
    return next((p for p in candidates if (p / "initdb").is_file() and (p / "pg_ctl").is_file()), None)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def _runner() -> tuple[list[str], Callable[[Path], None]] | str:
    """How to run the server binaries (PostgreSQL refuses to run as root) and how to hand a folder
    to that user; or why they cannot be run here."""
    if os.geteuid() != 0:
        return [], lambda _folder: None
    runuser = shutil.which("runuser")
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        return "running as root and no `postgres` OS user to run the server as"
    if runuser is None:
        return "running as root and no `runuser` to run the server as the `postgres` user"
    return [runuser, "-u", "postgres", "--"], lambda folder: os.chown(folder, account.pw_uid, account.pw_gid)


@pytest.fixture(scope="module")
def server(postgres_url: str) -> Iterator[PrivatePostgres]:
    """This test's own PostgreSQL, migrated (``postgres_url`` only opts in: the shared server is
    never touched)."""
    del postgres_url
    bindir = _server_binaries()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): install the postgresql package")
    runner = _runner()
    if isinstance(runner, str):
        pytest.skip(runner)
    run_as, hand_over = runner
    folder = Path(tempfile.mkdtemp(prefix="sandbox-pg-"))
    hand_over(folder)
    postgres = PrivatePostgres(bindir, folder, run_as)
    try:
        postgres.start()
        migrate.upgrade(postgres.url)
        yield postgres
        postgres.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module", name="cluster")
def three_replicas(server: PrivatePostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("restart") / "home"
    with cluster(server.url, home, grant=GRANT, abandoned_s=ABANDONED_S) as replicas:
        yield replicas


def test_postgres_restarted_mid_load(cluster: Cluster, server: PrivatePostgres) -> None:
    approve = f"/api/v1/access-requests/{cluster.pending}/approve"
    approved = cluster.call(1, "olivia", "POST", approve, json={"max_epsilon_per_query": 0.1})
    assert approved.status_code in (200, 201), approved.text  # umbrella spends too
    for user in ("alice", "bob", "ivan"):  # a replay source for each spender
        assert cluster.query(0, user, REPLAYED_SQL)["status"] == 200
    before = server.postmaster_pid()
    stop, moments = threading.Event(), {}

    def restart() -> None:
        try:  # once every client has had an answer (the replicas warm, the load steady)
            _wait_for(lambda: len(cluster.outcomes) >= 3 + CLIENTS, "the load warming up")
            moments["restarting"] = time.monotonic()
            server.restart()
            moments["back"] = time.monotonic()
            # until every client has been served again, on a fresh session, after the restart
            _wait_for(lambda: len(_since(cluster, moments["back"])) >= CLIENTS, "the load after the restart")
        finally:
            stop.set()

    restarter = threading.Thread(target=restart)
    restarter.start()
    load(cluster, [0, 1, 2], stop, requests=10_000)
    restarter.join()
    assert "back" in moments and server.postmaster_pid() != before, "the server was not restarted"

    outcomes = cluster.outcomes
    statuses = Counter(s["status"] for s in outcomes)
    codes = Counter(s["body"]["error"]["code"] for s in outcomes if s["status"] != 200)
    assert set(statuses) <= {200, 403, 503}, (statuses, codes)  # never a 500, never a dropped connection
    unavailable = {(s["body"]["error"]["code"], s["retry_after"]) for s in outcomes if s["status"] == 503}
    assert unavailable == {("store.unavailable", "2")}, (unavailable, statuses)  # some met the restart
    assert any(s["status"] == 200 for s in _since(cluster, moments["back"])), "no answer after the restart"

    # every replica answers again, still the same process (answered, or refused for budget)
    for replica, process in enumerate(cluster.processes):
        _wait_for(partial(_serves, cluster, replica), f"replica {replica}")
        assert process.poll() is None
    # their sealers linked every pending event (the checks' own control plane would seal them too)
    _wait_for(lambda: _count(server, "SELECT count(*) FROM audit_pending") == 0, "the replicas' sealers")
    beating = (
        "SELECT count(*) FROM replicas WHERE pid = ANY(%s) AND last_seen > now() - make_interval(secs => %s)"
    )
    pids = [process.pid for process in cluster.processes]
    _wait_for(
        lambda: _count(server, beating, pids, ABANDONED_S / 2) == len(pids), "every replica's heartbeat"
    )
    _wait_for(lambda: not _reserved(cluster), "every query closed")
    check_ledger(cluster)


def _serves(cluster: Cluster, replica: int) -> bool:
    """Whether the replica answers a query (or refuses it for budget): it reads and writes the store."""
    return cluster.query(replica, "alice", REPLAYED_SQL)["status"] in (200, 403)


def _since(cluster: Cluster, moment: float) -> list[dict[str, Any]]:
    """What the clients saw of the requests they sent after ``moment``."""
    with cluster.lock:
        return [seen for seen in cluster.outcomes if seen["sent"] > moment]


def _count(server: PrivatePostgres, sql: str, *parameters: object) -> int:
    with psycopg.connect(server.admin_url) as connection:
        row = connection.execute(sql, parameters or None).fetchone()
    assert row is not None
    return int(row[0])


def _reserved(cluster: Cluster) -> list[str]:
    with ControlPlane(cluster.settings) as control:
        return [q.id for q in control.list_queries(ADMIN, limit=10_000) if q.status == "reserved"]


def _wait_for(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + BOUNDED_S
    while not done():
        assert time.monotonic() < deadline, f"{what}: not within {BOUNDED_S} s"
        time.sleep(0.5)
