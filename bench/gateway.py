"""Benchmark: the gateway under 32 concurrent HTTP clients on the synthetic residents table.

Usage: ``python bench/gateway.py [--n 1000000] [--clients 32] [--fresh 600] [--duration 10]
[--replays 3000] [--workers 3]``

The synthetic tables of size N are generated once under ``.bench/synthetic-N`` and residents is
registered once into ``.bench/gateway-catalog-N`` (both reused afterwards). Each run builds a
fresh service home (state database, users, tokens, policies) around that catalog, starts a real
``sandbox serve`` (uvicorn) on a free 127.0.0.1 port and measures:

1. fresh queries: small aggregates whose WHERE literal differs every time (each one is planned,
   reserved, executed, noised and charged), closed loop (each client sends its next request when
   the previous one is answered: the throughput ceiling) and open loop at the target 50 q/s
   (latency from the time each request was due: p50/p99 at that load);
2. replays: identical repeats of answered queries (answered from the replay cache, no charge);
3. added latency, one request at a time, interleaved: an in-process ``Engine.query`` of a fresh
   query, then a fresh query over HTTP, then an HTTP replay of an answered one (a cheap stdlib
   keep-alive client); p50/p99 of each and what HTTP adds over the engine call;
4. the same fresh work in-process (engine only, and the whole pipeline with the control plane),
   sequentially and with the same concurrency, to show what the control plane adds;
5. an exhaustion run: every client spends from one small policy at once; the ledger must stop
   at exactly the granted budget.

Checks afterwards: for every policy the ledger's spend equals the sum the clients were charged
and never exceeds the grant; every request (replays and refusals included) left its audit event;
the audit chain verifies. Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
LOAD_ORGS = ("acme", "globex", "initech")  # fresh queries and replays
ORGS = (*LOAD_ORGS, "umbrella", "tight", "inproc")  # + sequential, exhaustion, in-process runs
EPSILON = 0.01
TIGHT_BUDGET = 0.5  # the exhaustion run's policy: exactly 50 queries of EPSILON
SEQUENTIAL = 50  # fresh queries measured one at a time
INTERLEAVED = 200  # engine / HTTP fresh / HTTP replay triples of the added-latency phase
TARGETS = {"fresh_qps": 50.0, "replay_qps": 300.0, "fresh_p99_ms": 250.0}


@dataclass
class Outcome:
    """What one HTTP request got back."""

    actor: str
    sql: str
    status: int
    seconds: float
    epsilon: float = 0.0
    cached: bool = False


@dataclass
class Phase:
    """Requests of one measured phase and its wall time."""

    name: str
    outcomes: list[Outcome] = field(default_factory=list)
    wall: float = 0.0

    @property
    def qps(self) -> float:
        """Requests per second over the phase."""
        return len(self.outcomes) / self.wall if self.wall else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile in milliseconds."""
        values = sorted(o.seconds for o in self.outcomes)
        if not values:
            return 0.0
        index = min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))
        return values[index] * 1000

    def statuses(self) -> dict[int, int]:
        """How many requests got each status."""
        return dict(Counter(o.status for o in self.outcomes))


def fresh_sql(i: int) -> str:
    """A small aggregate whose WHERE literal makes it a new release every time."""
    shapes = (
        "SELECT COUNT(*) AS n FROM residents WHERE income > {k}",
        "SELECT sex, COUNT(*) AS n FROM residents WHERE income > {k} GROUP BY sex",
        "SELECT AVG(age) AS mean_age FROM residents WHERE income < {k}",
        "SELECT hukou, COUNT(*) AS n FROM residents WHERE income >= {k} GROUP BY hukou",
    )
    return shapes[i % len(shapes)].format(k=1000 + i)


# ---------------------------------------------------------------- preparation


def prepare_catalog(n: int) -> Path:
    """Generate the synthetic tables and register residents once; the catalog home."""
    from sandbox.catalog import Catalog  # noqa: PLC0415
    from sandbox.catalog.synthetic import generate  # noqa: PLC0415

    data = BENCH_DIR / f"synthetic-{n}"
    catalog_home = BENCH_DIR / f"gateway-catalog-{n}"
    if not (data / "residents.yaml").exists():
        started = time.perf_counter()
        generate(data, n)
        log(f"generated N={n:,} in {time.perf_counter() - started:.1f} s")
    if not (catalog_home / "datasets" / "residents").exists():
        started = time.perf_counter()
        Catalog(catalog_home).register(data / "residents.yaml")
        log(f"registered residents in {time.perf_counter() - started:.1f} s")
    return catalog_home


@dataclass
class Setup:
    """A fresh home around the shared catalog: tokens per analyst, policy ids per organisation."""

    home: Path
    tokens: dict[str, str]
    policies: dict[str, str]


def prepare_home(catalog_home: Path, n: int) -> Setup:
    """A fresh service home linked to the catalog, with analysts, policies and an operator."""
    from sandbox.catalog import Catalog  # noqa: PLC0415
    from sandbox.control import ControlPlane  # noqa: PLC0415
    from sandbox.principals import Principal, Role  # noqa: PLC0415
    from sandbox.settings import Settings  # noqa: PLC0415

    home = BENCH_DIR / f"gateway-home-{n}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True, mode=0o700)
    (home / "datasets").symlink_to(catalog_home / "datasets", target_is_directory=True)
    settings = Settings(home=home)
    record = Catalog(home).get("residents")
    admin = Principal("bench-admin", frozenset({Role.OPERATOR}))
    owner = Principal("bench-owner", frozenset({Role.OWNER}), record.metadata.owner)
    tokens: dict[str, str] = {}
    policies: dict[str, str] = {}
    with ControlPlane(settings, create=True) as control:
        control.record_registration(admin, record)
        control.add_user("bench-operator", [Role.OPERATOR], None, actor=admin.name)
        tokens["bench-operator"] = control.issue_token("bench-operator", actor=admin.name).token
        for organisation in ORGS:
            name = f"analyst-{organisation}"
            principal = control.add_user(name, [Role.ANALYST], organisation, actor=admin.name)
            tokens[name] = control.issue_token(name, actor=admin.name).token
            budget = TIGHT_BUDGET if organisation == "tight" else 1000.0
            request = control.request_access(
                principal,
                record,
                purpose="gateway benchmark",
                columns=["age", "income", "sex", "hukou", "district_code"],
                epsilon=budget,
                delta=0.0,
                valid_until=datetime.now(UTC) + timedelta(days=1),
            )
            policy = control.approve(owner, request.id, record, max_epsilon_per_query=min(budget, 1.0))
            policies[organisation] = policy.id
    return Setup(home, tokens, policies)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_gateway(home: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    """``sandbox serve`` in a subprocess; returns it and its base URL once it answers."""
    port = free_port()
    env = {
        **os.environ,
        "SANDBOX_HOME": str(home),
        "SANDBOX_RATE_LIMIT_PER_MINUTE": "100000000",
    }
    command = [sys.executable, "-m", "sandbox.cli", "serve", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(
        [*command, "--log-level", "warning"], env=env, start_new_session=True, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the gateway exited during start-up")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("the gateway did not start in 120 s")


def stop_gateway(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the gateway's process group, then wait."""
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# ---------------------------------------------------------------- load


@dataclass
class KeepAlive:
    """A minimal HTTP/1.1 keep-alive client for the load generator.

    The load runs on the same two cores as the gateway, so the client must cost little: httpx
    spends about 4 ms of CPU per request, this one a fraction of that (fixed request shape,
    Content-Length framing only, which is what the gateway sends).
    """

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str

    @classmethod
    async def open(cls, url: str) -> KeepAlive:
        """Connect to ``http://host:port``."""
        address = httpx.URL(url)
        reader, writer = await asyncio.open_connection(address.host, address.port)
        return cls(reader, writer, f"{address.host}:{address.port}")

    async def post(self, path: str, body: dict[str, object], token: str) -> tuple[int, dict[str, Any]]:
        """POST a JSON body; the status and the decoded JSON answer."""
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        self.writer.write(head.encode() + payload)
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = next(
            int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")
        )
        return status, json.loads(await self.reader.readexactly(length))

    def close(self) -> None:
        """Close the connection."""
        self.writer.close()


async def run_load(
    name: str, url: str, jobs: list[tuple[str, str, str]], clients: int, rate: float | None = None
) -> Phase:
    """Send ``(actor, token, sql)`` jobs from ``clients`` concurrent HTTP clients.

    Without ``rate`` each client sends its next request as soon as the previous one is answered
    (closed loop: the throughput ceiling). With ``rate`` the requests are due at fixed intervals
    of ``1/rate`` seconds (open loop) and latency counts from the time a request was due, so
    queueing behind busy clients is included.
    """
    phase = Phase(name)
    pending = iter(enumerate(jobs))
    started = time.perf_counter()

    async def client() -> None:
        connection = await KeepAlive.open(url)
        try:
            for index, (actor, token, sql) in pending:
                due = started + index / rate if rate else time.perf_counter()
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                body = {"dataset": "residents", "sql": sql, "epsilon": EPSILON}
                status, answer = await connection.post("/api/v1/queries", body, token)
                seconds = time.perf_counter() - due
                answer = answer if status == 200 else {}
                phase.outcomes.append(
                    Outcome(
                        actor,
                        sql,
                        status,
                        seconds,
                        float(answer.get("epsilon_spent", 0.0)),
                        bool(answer.get("cached", False)),
                    )
                )
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    phase.wall = time.perf_counter() - started
    return phase


def in_process(home: Path, count: int, clients: int) -> dict[str, float]:
    """Fresh queries through the engine alone and through the whole pipeline, in this process."""
    from sandbox.catalog import Catalog  # noqa: PLC0415
    from sandbox.control import ControlPlane  # noqa: PLC0415
    from sandbox.pipeline import QueryPipeline  # noqa: PLC0415
    from sandbox.query import Engine  # noqa: PLC0415
    from sandbox.settings import Settings  # noqa: PLC0415

    settings = Settings(home=home)
    catalog = Catalog(home)
    engine = Engine(catalog, settings)
    control = ControlPlane(settings)
    pipeline = QueryPipeline(catalog, engine, control)
    analyst = control.get_principal("analyst-inproc")
    offset = 900_000

    def engine_query(i: int) -> None:
        engine.query("residents", fresh_sql(offset + i), EPSILON)

    def pipeline_query(i: int) -> None:
        pipeline.answer(analyst, "residents", fresh_sql(offset + 100_000 + i), EPSILON)

    results: dict[str, float] = {}
    for label, work in (("engine", engine_query), ("pipeline", pipeline_query)):
        work(-1)
        latencies = []
        for i in range(SEQUENTIAL):
            started = time.perf_counter()
            work(i)
            latencies.append(time.perf_counter() - started)
        results[f"{label}_p50_ms"] = statistics.median(latencies) * 1000
        results[f"{label}_qps_concurrent"] = _threaded_qps(work, count, clients, start=10_000)
    results["pipeline_queries"] = 1 + SEQUENTIAL + count
    engine.close()
    control.close()
    return results


def _threaded_qps(work: Callable[[int], None], count: int, clients: int, *, start: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(start, start + count)))
    return count / (time.perf_counter() - started)


def sequential(url: str, actor: str, token: str, count: int) -> Phase:
    """Fresh queries sent one at a time (no concurrency)."""
    phase = Phase("sequential")
    started_phase = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {token}"}) as http:
        for i in range(count):
            sql = fresh_sql(800_000 + i)
            started = time.perf_counter()
            response = http.post(
                "/api/v1/queries", json={"dataset": "residents", "sql": sql, "epsilon": EPSILON}
            )
            seconds = time.perf_counter() - started
            response.raise_for_status()
            phase.outcomes.append(Outcome(actor, sql, 200, seconds, float(response.json()["epsilon_spent"])))
    phase.wall = time.perf_counter() - started_phase
    return phase


def interleaved(
    url: str, home: Path, actor: str, token: str, count: int
) -> tuple[dict[str, list[float]], Phase]:
    """Engine call, HTTP fresh query and HTTP replay, one at a time, interleaved ``count`` times."""
    from sandbox.catalog import Catalog  # noqa: PLC0415
    from sandbox.query import Engine  # noqa: PLC0415
    from sandbox.settings import Settings  # noqa: PLC0415

    engine = Engine(Catalog(home), Settings(home=home))
    address = httpx.URL(url)
    connection = http.client.HTTPConnection(address.host, address.port)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    phase = Phase("interleaved")

    def post(sql: str) -> tuple[float, dict[str, Any]]:
        body = json.dumps({"dataset": "residents", "sql": sql, "epsilon": EPSILON})
        started = time.perf_counter()
        connection.request("POST", "/api/v1/queries", body, headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        seconds = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {answer}")
        phase.outcomes.append(
            Outcome(actor, sql, 200, seconds, float(answer["epsilon_spent"]), bool(answer["cached"]))
        )
        return seconds, answer

    times: dict[str, list[float]] = {"engine": [], "fresh": [], "replay": []}
    engine.query("residents", fresh_sql(600_000), EPSILON)
    post(fresh_sql(610_000))
    started_phase = time.perf_counter()
    for i in range(count):
        started = time.perf_counter()
        engine.query("residents", fresh_sql(620_000 + i), EPSILON)
        times["engine"].append(time.perf_counter() - started)
        seconds, _ = post(fresh_sql(640_000 + i))
        times["fresh"].append(seconds)
        seconds, answer = post(fresh_sql(640_000 + i))
        if not answer["cached"]:
            raise RuntimeError("a repeated query was not answered from the replay cache")
        times["replay"].append(seconds)
    phase.wall = time.perf_counter() - started_phase
    connection.close()
    engine.close()
    return times, phase


def percentile(values: list[float], q: float) -> float:
    """Percentile in milliseconds (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))] * 1000


# ---------------------------------------------------------------- checks


def check(setup: Setup, phases: list[Phase], in_process_queries: int) -> list[tuple[str, bool, str]]:
    """Budget and audit checks against the state store."""
    from sandbox.control import ControlPlane  # noqa: PLC0415
    from sandbox.principals import Principal, Role  # noqa: PLC0415
    from sandbox.settings import Settings  # noqa: PLC0415

    results: list[tuple[str, bool, str]] = []
    operator = Principal("bench-check", frozenset({Role.OPERATOR}))
    charged: dict[str, float] = {}
    requests: Counter[str] = Counter()
    for phase in phases:
        for outcome in phase.outcomes:
            charged[outcome.actor] = charged.get(outcome.actor, 0.0) + outcome.epsilon
            requests[outcome.actor] += 1
    charged["analyst-inproc"] = in_process_queries * EPSILON
    with ControlPlane(Settings(home=setup.home)) as control:
        budgets = {b.organisation: b for b in control.budget(operator)}
        for organisation in ORGS:
            budget = budgets[organisation]
            client_side = charged.get(f"analyst-{organisation}", 0.0)
            ok = (
                budget.epsilon_spent <= budget.epsilon_granted + 1e-12
                and budget.epsilon_reserved == 0
                and abs(budget.epsilon_spent - client_side) < 1e-6
            )
            detail = (
                f"ledger {budget.epsilon_spent:.2f} of {budget.epsilon_granted:g}, charged {client_side:.2f}"
            )
            results.append((f"no overspend: {organisation}", ok, detail))
        events = [json.loads(line) for line in control.export_audit(operator, "jsonl").splitlines()]
        query_types = {"query.answered", "query.replayed", "query.rejected", "query.failed"}
        per_actor = Counter(e["actor"] for e in events if e["type"] in query_types)
        for actor, sent in sorted(requests.items()):
            detail = f"{per_actor[actor]} events for {sent} requests"
            results.append((f"audit event per request: {actor}", per_actor[actor] == sent, detail))
        report = control.verify_audit()
        results.append(("audit chain verifies", report.ok, f"{report.events} events"))
    return results


# ---------------------------------------------------------------- main


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    """Prepare, run the phases, print the numbers and the checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="residents (default 1000000)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent HTTP clients")
    parser.add_argument("--fresh", type=int, default=600, help="fresh queries, closed loop")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the 50 q/s open-loop run")
    parser.add_argument("--replays", type=int, default=3000, help="cached replays, closed loop")
    parser.add_argument(
        "--interleaved", type=int, default=INTERLEAVED, help="triples of the added-latency phase"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=3,
        help="uvicorn worker processes (default 3: cores + 1, workers wait on fsync and DuckDB)",
    )
    args = parser.parse_args()

    BENCH_DIR.mkdir(exist_ok=True)
    catalog_home = prepare_catalog(args.n)
    setup = prepare_home(catalog_home, args.n)
    analysts = [(f"analyst-{o}", setup.tokens[f"analyst-{o}"]) for o in LOAD_ORGS]
    rate = TARGETS["fresh_qps"]
    log(f"starting the gateway ({args.workers} worker(s)) ...")
    process, url = start_gateway(setup.home, args.workers)
    try:
        warm = [(a, t, fresh_sql(500_000 + i)) for i, (a, t) in enumerate(analysts * 4)]
        phases = [asyncio.run(run_load("warm-up", url, warm, args.clients))]
        log(f"sequential: {SEQUENTIAL} fresh queries one at a time ...")
        alone = sequential(url, "analyst-umbrella", setup.tokens["analyst-umbrella"], SEQUENTIAL)
        log(f"added latency: {args.interleaved} engine / HTTP fresh / HTTP replay triples ...")
        added, added_phase = interleaved(
            url, setup.home, "analyst-umbrella", setup.tokens["analyst-umbrella"], args.interleaved
        )
        log(f"fresh, closed loop: {args.fresh} queries from {args.clients} clients ...")
        fresh_jobs = [(*analysts[i % len(analysts)], fresh_sql(i)) for i in range(args.fresh)]
        fresh = asyncio.run(run_load("fresh max", url, fresh_jobs, args.clients))
        paced_count = int(rate * args.duration)
        log(f"fresh, open loop: {paced_count} queries due at {rate:g}/s ...")
        paced_jobs = [(*analysts[i % len(analysts)], fresh_sql(100_000 + i)) for i in range(paced_count)]
        paced = asyncio.run(run_load(f"fresh {rate:g}/s", url, paced_jobs, args.clients, rate))
        answered = [o for o in fresh.outcomes + paced.outcomes if o.status == 200]
        log(f"replays, closed loop: {args.replays} cached queries from {args.clients} clients ...")
        picks = [answered[i % len(answered)] for i in range(args.replays)]
        replay_jobs = [(o.actor, setup.tokens[o.actor], o.sql) for o in picks]
        replays = asyncio.run(run_load("replay max", url, replay_jobs, args.clients))
        log("exhaustion: 120 queries against a policy with room for 50 ...")
        tight_token = setup.tokens["analyst-tight"]
        tight_jobs = [("analyst-tight", tight_token, fresh_sql(700_000 + i)) for i in range(120)]
        tight = asyncio.run(run_load("exhaustion", url, tight_jobs, args.clients))
        phases += [alone, added_phase, fresh, paced, replays, tight]
    finally:
        stop_gateway(process)
    log("in-process baseline ...")
    baseline = in_process(setup.home, min(args.fresh, 400), args.clients)

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ngateway benchmark: N={args.n:,} residents, {args.clients} clients, {args.workers} worker(s)")
    print(f"{'phase':<12} {'requests':>9} {'statuses':<22} {'q/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for phase in phases[1:]:
        statuses = ",".join(f"{k}:{v}" for k, v in sorted(phase.statuses().items()))
        print(
            f"{phase.name:<12} {len(phase.outcomes):>9} {statuses:<22} {phase.qps:>8.1f} "
            f"{phase.percentile(50):>8.1f} {phase.percentile(99):>8.1f}"
        )
    print("\nsequential fresh query latency (p50, one at a time):")
    print(f"  engine in-process          {baseline['engine_p50_ms']:8.1f} ms")
    print(f"  pipeline in-process        {baseline['pipeline_p50_ms']:8.1f} ms  (+ policy, ledger, audit)")
    gateway_p50 = alone.percentile(50)
    print(f"  through the gateway (HTTP) {gateway_p50:8.1f} ms")
    print(f"  gateway overhead vs engine {gateway_p50 - baseline['engine_p50_ms']:8.1f} ms")
    print(f"  HTTP + auth overhead vs pipeline {gateway_p50 - baseline['pipeline_p50_ms']:6.1f} ms")
    print(f"\nadded latency, one request at a time, interleaved ({args.interleaved} each; load {load}):")
    print(f"  {'':<28} {'p50 ms':>8} {'p99 ms':>8}")
    rows = (("engine call (in-process)", "engine"), ("HTTP fresh", "fresh"), ("HTTP replay", "replay"))
    for label, key in rows:
        print(f"  {label:<28} {percentile(added[key], 50):8.2f} {percentile(added[key], 99):8.2f}")
    for label, key in (("HTTP fresh - engine", "fresh"), ("HTTP replay - engine", "replay")):
        p50 = percentile(added[key], 50) - percentile(added["engine"], 50)
        p99 = percentile(added[key], 99) - percentile(added["engine"], 99)
        print(f"  {label:<28} {p50:8.2f} {p99:8.2f}")
    print(f"\nfresh throughput with {args.clients} concurrent callers:")
    print(f"  engine in-process (threads)   {baseline['engine_qps_concurrent']:8.1f} q/s")
    print(f"  pipeline in-process (threads) {baseline['pipeline_qps_concurrent']:8.1f} q/s")
    print(f"  gateway (HTTP clients)        {fresh.qps:8.1f} q/s")

    verdicts = [
        ("fresh q/s >= 50 (closed loop)", fresh.qps >= TARGETS["fresh_qps"], f"{fresh.qps:.1f}"),
        (
            f"fresh p99 < 250 ms at {rate:g}/s",
            paced.percentile(99) < TARGETS["fresh_p99_ms"] and paced.qps >= 0.95 * rate,
            f"p99 {paced.percentile(99):.1f} ms, achieved {paced.qps:.1f} q/s",
        ),
        ("replays/s >= 300 (closed loop)", replays.qps >= TARGETS["replay_qps"], f"{replays.qps:.1f}"),
        ("replays all cached", all(o.cached for o in replays.outcomes), ""),
        (
            "exhaustion stops at the grant",
            sum(o.status == 200 for o in tight.outcomes) == round(TIGHT_BUDGET / EPSILON),
            f"{sum(o.status == 200 for o in tight.outcomes)} answered, "
            f"{sum(o.status == 403 for o in tight.outcomes)} refused",
        ),
    ]
    checks = check(setup, phases, int(baseline["pipeline_queries"]))
    print("\ntargets and checks:")
    failed = False
    for label, ok, detail in verdicts + checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {label:<34} {detail}")
        failed = failed or not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
