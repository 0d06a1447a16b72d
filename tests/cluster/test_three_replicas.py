"""Three gateways on one ledger: ``sandbox serve`` ×3 on loopback ports over one PostgreSQL state
store and one dataset folder, under a bounded concurrent load, then with one replica SIGKILLed.

The load (60 clients, 6 requests each, spread over the replicas): fresh queries that spend three
organisations' budgets past exhaustion, replays of answers released on another replica, an
approval and a revocation made on one replica while the others serve. Checks: no policy is
overspent and its spend equals the charges the clients were told about plus the reservations the
maintenance sweep settled, each once; every answered query has exactly one charge; replays are
free on every replica; the revocation stops the next query on every replica, the approval opens
it on every replica; every query has its audit events exactly once; the one audit chain verifies;
after the SIGKILL nothing stays reserved.

Then the store refuses writes for a few seconds (the database made read-only and every session
ended, as a failover does): clients get 503 ``store.unavailable`` with ``Retry-After``, never a 500
and never an answer; afterwards both survivors answer again without a restart, and the ledger
checks hold.

Elsewhere: PostgreSQL itself restarted mid-load, on a server of the test's own (the one on the
build machines is shared): ``test_store_restart.py``. The rate limit across replicas:
``test_shared_rate_limit.py``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from cluster_support import (
    ADMIN,
    REPLAYED_SQL,
    SPENDERS,
    Cluster,
    check_ledger,
    cluster,
    fresh_sql,
    load,
    query_body,
)
from sqlalchemy.engine import make_url

from sandbox.control import ControlPlane
from sandbox.store import migrate

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

GRANT = 0.6  # 12 fresh queries per organisation; the load asks for many more
ABANDONED_S = 15.0  # well above a query's latency under this load: younger reservations are live


def _admin(url: str) -> str:
    return (
        make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    )


@pytest.fixture(scope="module")
def database(postgres_url: str) -> Iterator[str]:
    name = f"sbx_replicas_{uuid4().hex[:12]}"
    admin = make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    yield url
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", name="cluster")
def three_replicas(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    home = tmp_path_factory.mktemp("replicas") / "home"
    with cluster(database, home, grant=GRANT, abandoned_s=ABANDONED_S) as replicas:
        yield replicas


def test_load_across_three_replicas(cluster: Cluster) -> None:
    # a replay source: each spender's REPLAYED_SQL answered once, on replica 0
    first = {user: cluster.query(0, user, REPLAYED_SQL) for user in SPENDERS}
    assert all(seen["status"] == 200 and not seen["body"]["cached"] for seen in first.values()), first

    decisions: dict[str, Any] = {}

    def decide() -> None:
        time.sleep(0.5)  # while the load runs
        revoke = f"/api/v1/policies/{cluster.policies['initech']}/revoke"
        revoked = cluster.call(1, "olivia", "POST", revoke, json={"reason": "study ended"})
        decisions["after_revoke"] = [cluster.query(r, "ivan", fresh_sql()) for r in (0, 1, 2)]
        approved = cluster.call(
            2,
            "olivia",
            "POST",
            f"/api/v1/access-requests/{cluster.pending}/approve",
            json={"max_epsilon_per_query": 0.1},
        )
        decisions["after_approve"] = [cluster.query(r, "uma", fresh_sql()) for r in (0, 1, 2)]
        decisions["revoked"], decisions["approved"] = revoked.status_code, approved.status_code

    decider = threading.Thread(target=decide)
    decider.start()
    load(cluster, [0, 1, 2])
    decider.join()

    assert decisions["revoked"] == 200 and decisions["approved"] in (200, 201), decisions
    assert [s["status"] for s in decisions["after_revoke"]] == [403, 403, 403], decisions["after_revoke"]
    assert all(s["body"]["error"]["code"].startswith("policy.") for s in decisions["after_revoke"])
    # the approval opens umbrella's access on every replica (the load spends its budget at once,
    # so a budget refusal counts too; a missing policy does not)
    opened = [
        s["status"] == 200 or s["body"]["error"]["code"].startswith("budget.")
        for s in decisions["after_approve"]
    ]
    assert opened == [True, True, True], decisions["after_approve"]

    statuses = Counter(seen["status"] for seen in cluster.outcomes)
    codes = Counter(s["body"]["error"]["code"] for s in cluster.outcomes if s["status"] != 200)
    assert set(statuses) <= {200, 403}, (statuses, codes)  # answered, or refused: never a 500
    replays = [
        s
        for s in cluster.outcomes
        if s["sql"] == REPLAYED_SQL and s["user"] in SPENDERS and s["status"] == 200
    ]
    assert {s["replica"] for s in replays} == {0, 1, 2}
    later = [s for s in replays if s not in first.values()]
    assert later and all(s["body"]["cached"] and s["body"]["epsilon_spent"] == 0 for s in later)
    refused = [s["body"]["error"]["code"] for s in cluster.outcomes if s["status"] == 403]
    exhausted = [code for code in refused if code.startswith("budget")]
    assert exhausted, "the load must run the budgets out"
    check_ledger(cluster)


def test_a_replica_killed_mid_load(cluster: Cluster) -> None:
    stop = threading.Event()
    loader = threading.Thread(target=load, args=(cluster, [0, 1, 2], stop))
    before = len(cluster.outcomes)
    loader.start()
    time.sleep(0.3)
    cluster.processes[2].send_signal(signal.SIGKILL)
    loader.join()
    cluster.processes[2].wait(10)
    burst = cluster.outcomes[before:]
    assert {s["status"] for s in burst if s["replica"] != 2} <= {200, 403}
    time.sleep(ABANDONED_S + 3)  # the survivors' sweeps settle what the dead replica reserved
    check_ledger(cluster)
    with ControlPlane(cluster.settings) as control:
        reserved = [q for q in control.list_queries(ADMIN, limit=10_000) if q.status == "reserved"]
    assert reserved == []


def test_the_store_refusing_writes_gives_503_then_recovers(cluster: Cluster, database: str) -> None:
    name = make_url(database).database
    survivors = [0, 1]

    def refuse_writes(refuse: bool) -> None:
        with psycopg.connect(_admin(database), autocommit=True) as connection:
            setting = (
                "SET default_transaction_read_only = on" if refuse else "RESET default_transaction_read_only"
            )
            connection.execute(f'ALTER DATABASE "{name}" {setting}')
            others = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
            connection.execute(f"SELECT pg_terminate_backend(pid) FROM ({others}) AS sessions", (name,))

    before = len(cluster.outcomes)
    refuse_writes(True)
    try:
        responses = [
            cluster.call(r, "uma", "POST", "/api/v1/queries", json=query_body(fresh_sql()))
            for r in survivors * 3
        ]
    finally:
        refuse_writes(False)
    assert {r.status_code for r in responses} == {503}, [(r.status_code, r.text[:200]) for r in responses]
    for response in responses:
        assert response.headers["Retry-After"] == "2"
        assert response.json()["error"]["code"] == "store.unavailable"
    deadline = time.monotonic() + 30
    recovered: list[int | None] = [None]
    while time.monotonic() < deadline and not set(recovered) <= {200, 403}:
        # answered, or refused by the exhausted budget: either way the store took the write
        recovered = [cluster.query(r, "uma", REPLAYED_SQL)["status"] for r in survivors]
        time.sleep(0.5)
    assert set(recovered) <= {200, 403}, recovered
    assert all(s["status"] in (200, 403) for s in cluster.outcomes[before:])
    check_ledger(cluster)
