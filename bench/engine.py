"""Benchmark: DP query latency against the same plain aggregate in raw DuckDB, in one interleaved run.

Usage: ``python bench/engine.py [--sizes 1000000,10000000] [--reps 7] [--large]``

For each size N the synthetic provincial tables are generated once under ``.bench/`` (reused
afterwards) and registered in a sandbox home. Two raw baselines hold the same rows as loaded from
Parquet (no bounding, no clamping): a DuckDB *file* (what the engine reads too) and an *in-memory*
table. Each repetition runs, interleaved, four timings of every query:

- ``dp cached``: ``Engine.query`` with the same text every call (plan and SQL cached);
- ``dp fresh``: a new query text every call (the output alias changes), so the whole parse,
  validate, plan and SQL generation runs each time;
- ``raw file`` and ``raw mem``: the plain aggregate in DuckDB (fresh texts too: DuckDB parses and
  plans every statement anyway).

The table shows medians and the ratios; the geometric mean is over Q1–Q6. ``outside`` is the
median time of a cached DP query spent outside DuckDB (query time minus the time in the
statements): the engine's fixed cost. Each size runs in its own process; ``--large`` adds 100M.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
LARGE = 100_000_000


@dataclass(frozen=True)
class Case:
    """One benchmark query; ``{a}`` is the output alias (changed per call for fresh texts)."""

    name: str
    dataset: str
    sql: str
    in_geomean: bool = True

    def text(self, alias: str) -> str:
        """The query text with the given output alias."""
        return self.sql.format(a=alias)


CASES = [
    Case("Q1 count", "residents", "SELECT COUNT(*) AS {a} FROM residents"),
    Case("Q2 sum", "residents", "SELECT SUM(income) AS {a} FROM residents"),
    Case("Q3 avg", "residents", "SELECT AVG(age) AS {a} FROM residents"),
    Case(
        "Q4 group avg",
        "residents",
        "SELECT district_code, AVG(income) AS {a} FROM residents GROUP BY district_code",
    ),
    Case(
        "Q5 histogram",
        "residents",
        "SELECT district_code, COUNT(*) AS {a} FROM residents WHERE age >= 60 AND sex = 'F' "
        "GROUP BY district_code",
    ),
    Case("Q6 median", "residents", "SELECT MEDIAN(income) AS {a} FROM residents"),
    Case(
        "visits k=5",
        "medical_visits",
        "SELECT department, COUNT(*) AS {a} FROM medical_visits GROUP BY department",
        in_geomean=False,
    ),
]
TIMINGS = ("dp_cached", "dp_fresh", "raw_file", "raw_mem")


def prepare(n: int) -> tuple[Path, Path]:
    """Generate, register and load the tables of size ``n`` once; return (sandbox home, raw db)."""
    import duckdb  # noqa: PLC0415

    from sandbox.catalog import Catalog  # noqa: PLC0415
    from sandbox.catalog.synthetic import generate  # noqa: PLC0415

    data = BENCH_DIR / f"synthetic-{n}"
    home = BENCH_DIR / f"home-{n}"
    raw = BENCH_DIR / f"raw-{n}.duckdb"
    if not (data / "residents.yaml").exists():
        started = time.perf_counter()
        generate(data, n)
        print(f"  generated N={n:,} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    catalog = Catalog(home)
    for name in ("residents", "medical_visits"):
        if not (home / "datasets" / name).exists():
            started = time.perf_counter()
            catalog.register(data / f"{name}.yaml")
            print(f"  registered {name} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if not raw.exists():
        connection = duckdb.connect(str(raw))
        for name in ("residents", "medical_visits"):
            connection.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{data / name}.parquet')")
        connection.close()
    return home, raw


class DuckTimer:
    """Accumulates the wall time spent inside the engine's DuckDB statements (this process only)."""

    def __init__(self) -> None:
        from sandbox.query.execute import LockedDatabase  # noqa: PLC0415

        self.seconds = 0.0
        original = LockedDatabase.run
        timer = self

        def run(self: LockedDatabase, sql: str, timeout_s: float) -> list[tuple[Any, ...]]:
            started = time.perf_counter()
            try:
                return original(self, sql, timeout_s)
            finally:
                timer.seconds += time.perf_counter() - started

        LockedDatabase.run = run  # type: ignore[method-assign]


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def run_size(n: int, reps: int) -> dict[str, Any]:
    """Measure every case at size ``n`` in this process, the four timings interleaved."""
    import duckdb  # noqa: PLC0415

    from sandbox.catalog import Catalog  # noqa: PLC0415
    from sandbox.query import Engine  # noqa: PLC0415
    from sandbox.settings import Settings  # noqa: PLC0415

    home, raw_path = prepare(n)
    timer = DuckTimer()
    settings = Settings(home=home, duckdb_threads=2, duckdb_memory_limit="8GB")
    engine = Engine(Catalog(home), settings)
    raw_file = duckdb.connect(str(raw_path), read_only=True, config={"threads": 2})
    raw_mem = duckdb.connect(":memory:", config={"threads": 2})
    raw_mem.execute(f"ATTACH '{raw_path}' AS source (READ_ONLY)")
    for name in ("residents", "medical_visits"):
        raw_mem.execute(f"CREATE TABLE {name} AS SELECT * FROM source.{name}")
    raw_mem.execute("DETACH source")
    counter = iter(range(10**9))
    rows = []
    for case in CASES:
        cached = case.text("v")
        engine.query(case.dataset, cached, 1.0)
        raw_file.execute(cached).fetchall()
        raw_mem.execute(cached).fetchall()
        times: dict[str, list[float]] = {t: [] for t in TIMINGS}
        outside: list[float] = []
        for _ in range(reps):
            fresh = case.text(f"v{next(counter)}")
            before = timer.seconds
            elapsed = _timed(lambda: engine.query(case.dataset, cached, 1.0))  # noqa: B023
            times["dp_cached"].append(elapsed)
            outside.append(elapsed - (timer.seconds - before))
            times["dp_fresh"].append(_timed(lambda: engine.query(case.dataset, fresh, 1.0)))  # noqa: B023
            times["raw_file"].append(_timed(lambda: raw_file.execute(fresh).fetchall()))  # noqa: B023
            times["raw_mem"].append(_timed(lambda: raw_mem.execute(fresh).fetchall()))  # noqa: B023
        row: dict[str, Any] = {"n": n, "case": case.name, "geomean": case.in_geomean}
        row.update({f"{t}_ms": statistics.median(v) * 1000 for t, v in times.items()})
        row["outside_ms"] = statistics.median(outside) * 1000
        rows.append(row)
    return {
        "rows": rows,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load": os.getloadavg(),
    }


RATIOS = (
    ("cached/file", "dp_cached", "raw_file"),
    ("cached/mem", "dp_cached", "raw_mem"),
    ("fresh/file", "dp_fresh", "raw_file"),
    ("fresh/mem", "dp_fresh", "raw_mem"),
)


def report(results: list[dict[str, Any]]) -> None:
    """Print one table per size and the geometric means."""
    for result in results:
        rows = result["rows"]
        load = ", ".join(f"{x:.2f}" for x in result["load"])
        print(f"\nN = {rows[0]['n']:,}  (peak RSS {result['peak_rss_mb']:.0f} MB, load average {load})")
        header = f"{'query':<14}" + "".join(f"{t + ' ms':>13}" for t in TIMINGS)
        header += "".join(f"{label:>12}" for label, _, _ in RATIOS) + f"{'outside ms':>12}"
        print(header)
        print("-" * len(header))
        for row in rows:
            line = f"{row['case']:<14}" + "".join(f"{row[t + '_ms']:>13.2f}" for t in TIMINGS)
            line += "".join(f"{row[a + '_ms'] / row[b + '_ms']:>12.2f}" for _, a, b in RATIOS)
            print(line + f"{row['outside_ms']:>12.3f}")
        chosen = [row for row in rows if row["geomean"]]
        line = f"{'geomean Q1-Q6':<14}" + " " * 13 * len(TIMINGS)
        for _, a, b in RATIOS:
            mean = math.exp(statistics.fmean(math.log(r[a + "_ms"] / r[b + "_ms"]) for r in chosen))
            line += f"{mean:>12.2f}"
        print(line + f"{statistics.median(r['outside_ms'] for r in chosen):>12.3f}")


def main() -> int:
    """Run each size in its own process and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated N values")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per query")
    parser.add_argument("--large", action="store_true", help=f"add N = {LARGE:,}")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return 0
    if args.one:
        print(json.dumps(run_size(args.one, args.reps)))
        return 0
    BENCH_DIR.mkdir(exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")] + ([LARGE] if args.large else [])
    results: list[dict[str, Any]] = []
    for n in sizes:
        print(f"N={n:,}: preparing (first run only) ...", file=sys.stderr)
        subprocess.run([sys.executable, __file__, "--prepare", str(n)], check=True)
        print(f"N={n:,}: measuring ...", file=sys.stderr)
        output = subprocess.run(
            [sys.executable, __file__, "--one", str(n), "--reps", str(args.reps)],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(output.stdout))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
