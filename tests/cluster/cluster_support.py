"""What the cluster tests share: gateway replicas (``sandbox serve`` processes on free loopback
ports) over one state store and one dataset folder, the analysts and policies they serve, the
concurrent load they run, and the ledger and audit checks that follow every fault."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx

from sandbox.catalog.registry import Catalog
from sandbox.control import ControlPlane
from sandbox.demo.hub import free_port
from sandbox.principals import Principal, Role
from sandbox.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PUMS = REPO / "deploy" / "datasets" / "shared" / "pums.yaml"
ADMIN = Principal("test-admin", frozenset({Role.OPERATOR}))
EPSILON = 0.05
CLIENTS, REQUESTS = 60, 6
SPENDERS = {"alice": "acme", "bob": "globex", "ivan": "initech"}
LATE = {"uma": "umbrella"}  # requests access before the load; not approved by ``cluster``
REPLAYED_SQL = "SELECT sex, COUNT(*) AS n FROM people GROUP BY sex"


@contextmanager
def replicas(
    home: Path, environment: dict[str, str], count: int
) -> Iterator[tuple[list[str], list[subprocess.Popen[bytes]]]]:
    """``count`` gateways on ``home`` with extra ``SANDBOX_*`` variables; their URLs and processes
    once all answer ``/healthz``; terminated afterwards (those still running)."""
    ports = [free_port() for _ in range(count)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "sandbox.cli", "--home", str(home), "serve", "--port", str(port)],
            env={**os.environ, **environment},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        for url, process in zip(urls, processes, strict=True):
            _wait_healthy(url, process)
        yield urls, processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            process.wait(30)


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"replica {url} exited with {process.returncode}"
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


@dataclass
class Cluster:
    """Replicas over one store: URLs, processes, tokens, policy ids, and what the clients saw."""

    settings: Settings
    urls: list[str]
    processes: list[subprocess.Popen[bytes]]
    tokens: dict[str, str]
    policies: dict[str, str]  # organisation -> policy id
    pending: str  # umbrella's request id
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, replica: int, user: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        with httpx.Client(base_url=self.urls[replica], headers=headers, timeout=60) as client:
            return client.request(method, path, **kwargs)

    def query(self, replica: int, user: str, sql: str) -> dict[str, Any]:
        """Send a query; record and return what the client saw (status, body, ``Retry-After``) and
        when (``sent``, ``at``: monotonic seconds)."""
        sent = time.monotonic()
        try:
            response = self.call(replica, user, "POST", "/api/v1/queries", json=query_body(sql))
            body = response.json()
            seen = {
                "status": response.status_code,
                "body": body,
                "retry_after": response.headers.get("Retry-After"),
            }
        except httpx.TransportError as error:
            seen = {"status": None, "body": {"error": {"code": type(error).__name__}}, "retry_after": None}
        seen |= {"replica": replica, "user": user, "sql": sql, "sent": sent, "at": time.monotonic()}
        with self.lock:
            self.outcomes.append(seen)
        return seen


def query_body(sql: str) -> dict[str, Any]:
    """The request body of a query on the PUMS sample at ``EPSILON``."""
    return {"dataset": "pums", "sql": sql, "epsilon": EPSILON}


def fresh_sql() -> str:
    """A query never asked before (a new literal): planned, reserved, executed, charged."""
    age, income = uuid4().int % 90, uuid4().int % 10**6
    return f"SELECT COUNT(*) AS n FROM people WHERE age > {age} AND income >= {income}"


@contextmanager
def cluster(
    database: str, home: Path, *, grant: float, abandoned_s: float, count: int = 3
) -> Iterator[Cluster]:
    """``count`` replicas over the migrated ``database``, with the repository's PUMS sample
    registered; each spender's organisation granted ``grant`` epsilon, umbrella's request pending."""
    settings = Settings(home=home, db_url=database)
    record = Catalog(settings.home_dir).register(PUMS, source_root=REPO / "data")
    with ControlPlane(settings) as control:
        control.record_registration(ADMIN, record)
        control.add_user("olivia", [Role.OWNER], "census-bureau", actor=ADMIN.name)
        control.add_user("oscar", [Role.OPERATOR], None, actor=ADMIN.name)
        olivia = control.get_principal("olivia")
        policies, tokens = {}, {}
        for user, organisation in {**SPENDERS, **LATE}.items():
            analyst = control.add_user(user, [Role.ANALYST], organisation, actor=ADMIN.name)
            request = control.request_access(
                analyst,
                record,
                purpose="replica test",
                columns=["age", "sex", "income"],
                epsilon=grant,
                delta=0.0,
                valid_until=datetime.now(UTC) + timedelta(days=1),
            )
            if user in SPENDERS:
                policy = control.approve(olivia, request.id, record, max_epsilon_per_query=0.1)
                policies[organisation] = policy.id
            else:
                pending = request.id
        for user in [*SPENDERS, *LATE, "olivia", "oscar"]:
            tokens[user] = control.issue_token(user, actor=ADMIN.name).token
    environment = {
        "SANDBOX_DB_URL": database,
        "SANDBOX_RATE_LIMIT_PER_MINUTE": "100000",
        "SANDBOX_MAINTENANCE_INTERVAL_S": "1",
        "SANDBOX_ABANDONED_RESERVATION_S": str(abandoned_s),
    }
    with replicas(home, environment, count) as (urls, processes):
        yield Cluster(settings, urls, processes, tokens, policies, pending)


def load(
    cluster: Cluster, replicas: list[int], stop: threading.Event | None = None, requests: int = REQUESTS
) -> None:
    """CLIENTS clients × ``requests`` requests over ``replicas`` (until ``stop`` is set): fresh
    queries of every analyst and replays of REPLAYED_SQL (released before on another replica)."""
    users = itertools.cycle([*SPENDERS, *LATE])

    def client(index: int) -> None:
        user = next(users)
        for step in range(requests):
            if stop is not None and stop.is_set():
                return
            replica = replicas[(index + step) % len(replicas)]
            cluster.query(replica, user, REPLAYED_SQL if step % 3 == 2 else fresh_sql())

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(client, range(CLIENTS)))


def check_ledger(cluster: Cluster) -> None:
    """Every policy: spend ≤ grant, and spend = the charges the ledger holds, each once; every
    answer a client received is one of those charges; every recorded query has exactly its audit
    events (one ``query.reserved`` and one ``query.answered``/``query.failed`` per charge, one
    ``query.replayed`` per replay, one ``query.rejected`` per refusal), none lost or doubled; the
    audit chain verifies (and proves the stored state)."""
    with ControlPlane(cluster.settings) as control:
        queries = control.list_queries(ADMIN, limit=10_000)
        budgets = {b.organisation: b for b in control.budget(ADMIN)}
        report = control.verify_audit()
        events = control.audit_events(ADMIN, after=0, limit=10_000)
    assert len(queries) < 10_000 and len(events) < 10_000, "raise the limits: the checks must see everything"
    assert report.ok, report
    assert set(budgets) == {*SPENDERS.values(), *LATE.values()}
    charged: Counter[str | None] = Counter()
    for q in queries:
        if q.status in ("answered", "failed"):
            charged[q.organisation] += round(q.epsilon / EPSILON)
    for organisation, budget in budgets.items():
        assert budget.epsilon_spent + budget.epsilon_reserved <= budget.epsilon_granted + 1e-12, organisation
        assert round(budget.epsilon_spent / EPSILON) == charged[organisation], organisation
    by_id = {q.id: q for q in queries}
    answered = [s for s in cluster.outcomes if s["status"] == 200]
    for seen in answered:
        query = by_id[seen["body"]["query_id"]]
        if seen["body"]["cached"]:
            assert query.status == "replayed" and seen["body"]["epsilon_spent"] == 0
        else:
            assert query.status == "answered" and query.epsilon == seen["body"]["epsilon_spent"] == EPSILON
    fresh_ids = [s["body"]["query_id"] for s in answered if not s["body"]["cached"]]
    assert len(fresh_ids) == len(set(fresh_ids))  # one charge per answer
    _check_query_events(queries, events)


def _check_query_events(queries: list[Any], events: list[Any]) -> None:
    """Each query's audit events, by type: exactly those its final status calls for, once each."""
    found: Counter[tuple[str, str]] = Counter(
        (event.type, event.payload["query_id"]) for event in events if event.type.startswith("query.")
    )
    expected: Counter[tuple[str, str]] = Counter()
    for q in queries:
        if q.status in ("answered", "failed"):
            expected[("query.reserved", q.id)] += 1
            expected[(f"query.{q.status}", q.id)] += 1
        elif q.status == "replayed":
            expected[("query.replayed", q.id)] += 1
        elif q.status == "rejected":
            expected[("query.rejected", q.id)] += 1
        else:
            expected[("query.reserved", q.id)] += 1  # still running: its closing event comes later
    assert found == expected, (found - expected, expected - found)
