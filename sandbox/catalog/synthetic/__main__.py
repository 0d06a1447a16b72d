"""``python -m sandbox.catalog.synthetic --n 1000000 --seed 42 --out DIR``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sandbox.catalog.synthetic.writer import CHUNK_SIZE, generate


def main(argv: list[str] | None = None) -> int:
    """Generate the synthetic datasets and print a progress line and a summary."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.catalog.synthetic",
        description="Write the synthetic provincial datasets (Parquet + metadata YAML).",
    )
    parser.add_argument("--n", type=int, default=1_000_000, help="number of residents (default 1000000)")
    parser.add_argument("--seed", type=int, default=42, help="unsigned 64-bit seed (default 42)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=CHUNK_SIZE,
        help=f"residents per chunk; memory grows with it (default {CHUNK_SIZE})",
    )
    args = parser.parse_args(argv)

    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        elapsed = time.monotonic() - started
        print(
            f"\r{done:,} / {total:,} residents ({100 * done / total:.0f}%), {elapsed:.1f} s",
            end="",
            file=sys.stderr,
        )

    files = generate(args.out, args.n, args.seed, chunk_size=args.chunk_size, progress=progress)
    print(file=sys.stderr)
    for name, rows in files.rows.items():
        print(f"{name:15} {rows:>13,} rows  {files.parquet[name]}")
    for path in files.metadata.values():
        print(f"{'metadata':15} {'':>13}       {path}")
    print(f"{files.total_rows:,} rows in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
