"""Benchmark: dataset registration throughput (µs per source row) and peak memory.

Usage: ``python bench/ingest.py [--sizes 10000000] [--large] [--tables residents,medical_visits]``

For each size N the synthetic provincial tables are generated once under ``.bench/synthetic-N``
(reused afterwards). N = 100M (``--large``) tiles the generator's 10M residents and visits ten
times with shifted ids (``person_id + k·10M``, ``visit_id + k·160M``: the ids the generator itself
gives at 100M) into ``.bench/tiled-100000000``: generating 100M directly writes 1.1 billion rows
(bus trips included) and takes over an hour on the 2-core machine; about 3 GB of disk.
Each table is then registered into a throw-away catalog by ``Catalog.register`` in a fresh
subprocess, so the peak RSS reported is that registration's alone (the process's maximum resident
set, DuckDB's buffers included). The time spent computing the content fingerprint is reported
separately, and so is the CPU time of the child (user + system, all threads), which a loaded
machine inflates less than wall time. ``raw`` is DuckDB copying the same Parquet file into a new
database file as it is (``CREATE TABLE AS SELECT * FROM read_parquet``, then ``CHECKPOINT``) in
another child right after: the floor any registration pays. The catalog is deleted afterwards.
``--large`` adds N = 100M.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
LARGE = 100_000_000


def generated(n: int) -> Path:
    """The folder of the synthetic tables of size ``n`` (generated on first use)."""
    from sandbox.catalog.synthetic import generate  # noqa: PLC0415

    data = BENCH_DIR / f"synthetic-{n}"
    if not (data / "residents.yaml").exists():
        started = time.perf_counter()
        generate(data, n)
        print(f"  generated N={n:,} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return data


def tiled(n: int) -> Path:
    """The residents and visits of size ``n`` (a multiple of 10M) tiled from the generator's 10M."""
    import duckdb  # noqa: PLC0415

    base, copies = 10_000_000, n // 10_000_000
    source = generated(base)
    data = BENCH_DIR / f"tiled-{n}"
    if (data / "medical_visits.yaml").exists():
        return data
    data.mkdir(exist_ok=True)
    shifts = {"residents": "person_id + k * {b} AS person_id", "medical_visits": ""}
    shifts["medical_visits"] = "visit_id + k * {v} AS visit_id, person_id + k * {b} AS person_id"
    started = time.perf_counter()
    with duckdb.connect() as con:
        for table, shift in shifts.items():
            replace = shift.format(b=base, v=16 * base)
            target = data / f"{table}.parquet"
            con.execute(
                f"COPY (SELECT * REPLACE ({replace}) FROM range({copies}) AS c(k), "
                f"read_parquet('{source / table}.parquet')) TO '{target}' "
                "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)"
            )
            shutil.copy(source / f"{table}.yaml", data / f"{table}.yaml")
    print(f"  tiled N={n:,} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return data


def register_one(data: Path, table: str) -> dict[str, Any]:
    """Register ``table`` into a fresh catalog in this process; timings and row counts."""
    import duckdb  # noqa: PLC0415
    import pyarrow.parquet as pq  # noqa: PLC0415

    from sandbox.catalog import Catalog, fingerprint, ingest  # noqa: PLC0415

    spent = {"fingerprint": 0.0}
    original = fingerprint.content_sha256

    def timed(con: duckdb.DuckDBPyConnection, table: str) -> str:
        started = time.perf_counter()
        try:
            return original(con, table)
        finally:
            spent["fingerprint"] += time.perf_counter() - started

    ingest.content_sha256 = timed  # type: ignore[attr-defined]
    home = BENCH_DIR / f"ingest-home-{os.getpid()}"
    shutil.rmtree(home, ignore_errors=True)
    try:
        started = time.perf_counter()
        record = Catalog(home).register(data / f"{table}.yaml")
        seconds = time.perf_counter() - started
        stored = os.path.getsize(home / "datasets" / record.name / record.database_file)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {
        "table": table,
        "rows": pq.ParquetFile(data / f"{table}.parquet").metadata.num_rows,
        "seconds": seconds,
        "fingerprint_seconds": spent["fingerprint"],
        "stored_mb": stored / 2**20,
    }


def raw_load(parquet: Path, folder: Path) -> float:
    """Seconds DuckDB takes to copy the Parquet file into a new database file as it is (the floor)."""
    import duckdb  # noqa: PLC0415

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "raw.duckdb"
    try:
        started = time.perf_counter()
        with duckdb.connect(str(target)) as con:
            con.execute("SET enable_progress_bar = false")
            con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{parquet}')")
            con.execute("CHECKPOINT")
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(data: Path, table: str) -> dict[str, Any]:
    """``register_one`` in a child process; adds the child's peak RSS and the raw load's time."""
    raw = subprocess.run(
        [sys.executable, __file__, "--raw", str(data / f"{table}.parquet")],
        check=True,
        capture_output=True,
        text=True,
    )
    command = [sys.executable, __file__, "--one", str(data), "--tables", table]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"registering {table} failed")
    result: dict[str, Any] = json.loads(output)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    result["raw_seconds"] = float(raw.stdout)
    result["load"] = os.getloadavg()[0]
    return result


def main() -> int:
    """Generate once, register each table in a child process, print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000000", help="comma-separated N values (residents)")
    parser.add_argument("--large", action="store_true", help=f"add N = {LARGE:,}")
    parser.add_argument("--tables", default="residents,medical_visits", help="tables to register")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:
        print(tiled(args.prepare) if args.prepare == LARGE else generated(args.prepare))
        return 0
    if args.raw:
        print(raw_load(args.raw, BENCH_DIR / f"raw-load-{os.getpid()}"))
        return 0
    if args.one:
        print(json.dumps(register_one(args.one, args.tables)))
        return 0
    BENCH_DIR.mkdir(exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")] + ([LARGE] if args.large else [])
    results = []
    for n in sizes:
        # in a child: a child started later would report this process's peak RSS as its own
        prepared = subprocess.run(
            [sys.executable, __file__, "--prepare", str(n)], check=True, stdout=subprocess.PIPE
        )
        data = Path(prepared.stdout.decode().strip())
        for table in args.tables.split(","):
            print(f"N={n:,}: registering {table} ...", file=sys.stderr)
            results.append({"n": n, **measure(data, table)})
    header = (
        f"{'N':>12} {'table':<15} {'rows':>12} {'seconds':>9} {'µs/row':>8} {'raw µs/row':>11} "
        f"{'ratio':>6} {'fingerprint':>12} "
        f"{'CPU µs/row':>11} {'peak RSS MB':>12} {'stored MB':>10} {'load':>6}"
    )
    print(header)
    print("-" * len(header))
    for row in results:
        share = row["fingerprint_seconds"] / row["seconds"]
        print(
            f"{row['n']:>12,} {row['table']:<15} {row['rows']:>12,} {row['seconds']:>9.1f} "
            f"{row['seconds'] / row['rows'] * 1e6:>8.3f} {row['raw_seconds'] / row['rows'] * 1e6:>11.3f} "
            f"{row['seconds'] / row['raw_seconds']:>6.2f} {share:>11.0%} "
            f"{row['cpu_seconds'] / row['rows'] * 1e6:>11.3f} {row['peak_rss_mb']:>12.0f} "
            f"{row['stored_mb']:>10.0f} {row['load']:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
