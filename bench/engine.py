"""Benchmark: DP query latency against the same plain aggregate in raw DuckDB, in the same run.

Usage: ``python bench/engine.py [--sizes 1000000,10000000] [--reps 7]``

For each size N, the synthetic provincial tables are generated once under ``.bench/`` (reused
afterwards), registered in a sandbox home, and loaded as-is into a plain DuckDB file: the raw
baseline. Each query runs warm, interleaved DP/raw, ``reps`` times; the table shows the medians,
their ratio and the peak RSS of the process that ran that size (each size runs in a subprocess).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"


@dataclass(frozen=True)
class Case:
    """One benchmark query: the DP form and the plain DuckDB form."""

    name: str
    dataset: str
    dp_sql: str
    raw_sql: str
    target: float


CASES = [
    Case("count", "residents", "SELECT COUNT(*) FROM residents", "SELECT COUNT(*) FROM residents", 1.5),
    Case(
        "sum",
        "residents",
        "SELECT SUM(income) FROM residents",
        "SELECT SUM(income) FROM residents",
        1.5,
    ),
    Case("avg", "residents", "SELECT AVG(age) FROM residents", "SELECT AVG(age) FROM residents", 1.5),
    Case(
        "group_avg",
        "residents",
        "SELECT district_code, AVG(income) FROM residents GROUP BY district_code",
        "SELECT district_code, AVG(income) FROM residents GROUP BY district_code",
        1.5,
    ),
    Case(
        "histogram",
        "residents",
        "SELECT district_code, COUNT(*) FROM residents WHERE age >= 60 AND sex = 'F' GROUP BY district_code",
        "SELECT district_code, COUNT(*) FROM residents WHERE age >= 60 AND sex = 'F' GROUP BY district_code",
        1.5,
    ),
    Case(
        "quantile",
        "residents",
        "SELECT MEDIAN(income) FROM residents",
        "SELECT MEDIAN(income) FROM residents",
        3.0,
    ),
    Case(
        "visits_count",
        "medical_visits",
        "SELECT department, COUNT(*) FROM medical_visits GROUP BY department",
        "SELECT department, COUNT(*) FROM medical_visits GROUP BY department",
        1.5,
    ),
]


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
            parquet = str(data / f"{name}.parquet")
            connection.execute(f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{parquet}')")
        connection.close()
    return home, raw


def run_size(n: int, reps: int) -> list[dict[str, Any]]:
    """Measure every case at size ``n`` in this process."""
    import duckdb  # noqa: PLC0415

    from sandbox.catalog import Catalog  # noqa: PLC0415
    from sandbox.query import Engine  # noqa: PLC0415
    from sandbox.settings import Settings  # noqa: PLC0415

    home, raw_path = prepare(n)
    settings = Settings(home=home, duckdb_threads=2, duckdb_memory_limit="8GB")
    engine = Engine(Catalog(home), settings)
    raw = duckdb.connect(str(raw_path), read_only=True, config={"threads": 2})
    rows = []
    for case in CASES:
        engine.query(case.dataset, case.dp_sql, 1.0)
        raw.execute(case.raw_sql).fetchall()
        dp_times, raw_times = [], []
        for _ in range(reps):
            started = time.perf_counter()
            engine.query(case.dataset, case.dp_sql, 1.0)
            dp_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            raw.execute(case.raw_sql).fetchall()
            raw_times.append(time.perf_counter() - started)
        dp, plain = statistics.median(dp_times), statistics.median(raw_times)
        rows.append(
            {
                "n": n,
                "case": case.name,
                "dp_ms": dp * 1000,
                "raw_ms": plain * 1000,
                "ratio": dp / plain,
                "target": case.target,
            }
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for row in rows:
        row["peak_rss_mb"] = peak
    return rows


def main() -> int:
    """Run each size in its own process and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated N values")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per query")
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
    results: list[dict[str, Any]] = []
    for n in (int(s) for s in args.sizes.split(",")):
        print(f"N={n:,}: preparing (first run only) ...", file=sys.stderr)
        subprocess.run([sys.executable, __file__, "--prepare", str(n)], check=True)
        print(f"N={n:,}: measuring ...", file=sys.stderr)
        output = subprocess.run(
            [sys.executable, __file__, "--one", str(n), "--reps", str(args.reps)],
            check=True,
            capture_output=True,
            text=True,
        )
        results.extend(json.loads(output.stdout))
    header = (
        f"{'N':>12} {'query':<14} {'DP ms':>9} {'raw ms':>9} {'ratio':>7} {'target':>7} {'peak RSS MB':>12}"
    )
    print(header)
    print("-" * len(header))
    for row in results:
        verdict = "" if float(row["ratio"]) <= float(row["target"]) else "  (above target)"
        print(
            f"{int(row['n']):>12,} {row['case']!s:<14} {float(row['dp_ms']):>9.2f} "
            f"{float(row['raw_ms']):>9.2f} {float(row['ratio']):>7.2f} {float(row['target']):>7.1f} "
            f"{float(row['peak_rss_mb']):>12.0f}{verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
