"""Rebuild the repository's extracts of the shared public datasets (``data/README.md``).

    python data/extract.py /path/to/shared/data

The suite and the demo must run from a clone alone, so the repository carries small, licensed
extracts in the same layout as the shared data folder: the PUMS files and the SmartNoise workload
whole, a deterministic subset of every larger table. Each rule below keeps what the tests rely on
(every category, NULL groups, units above their contribution bound). Parquet files keep their
``source`` metadata with the rule appended, and ``SHA256SUMS`` is rewritten.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
COPIED = [
    "pums/pums_1000.parquet",
    "pums/pums_dup.parquet",
    "pums/pums_null.parquet",
    "pums_queries/README.md",
    "pums_queries/smartnoise_queries.json",
    "diabetes_130/id_mapping.parquet",
]
# file -> the WHERE clause that selects the extract's rows (source order is kept)
EXTRACTS = {
    "adult/adult.parquet": "person_id % 20 = 1",
    "fulton_pums/fulton_pums5.parquet": "person_id % 10 = 1",
    "diabetes_130/encounters.parquet": "patient_nbr % 25 = 0",
    "nycflights13/flights.parquet": "md5(tailnum) < '05' OR (tailnum IS NULL AND flight_id % 20 = 0)",
    "beijing_air/beijing_air_quality.parquet": "no % 200 = 1",
}
ROW_GROUP_ROWS = 1_000  # several row groups, so registration reports progress more than once


def extract(shared: Path, name: str, where: str) -> None:
    source = shared / name
    original = pq.read_metadata(source).metadata or {}
    with duckdb.connect() as con:
        rows = con.execute(
            f"SELECT file_row_number FROM read_parquet('{source}', file_row_number = true) WHERE {where} "
            "ORDER BY file_row_number"
        ).fetchall()
    table = pq.read_table(source).take([row[0] for row in rows])  # the source's exact types
    note = f"{original.get(b'source', b'').decode()}; repository extract: rows WHERE {where}"
    table = table.replace_schema_metadata({"source": note})
    target = HERE / name
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target, compression="zstd", compression_level=9, row_group_size=ROW_GROUP_ROWS)
    print(f"{name}: {table.num_rows:,} rows")


def main(shared: Path) -> None:
    for name in COPIED:
        (HERE / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared / name, HERE / name)
    for name, where in EXTRACTS.items():
        extract(shared, name, where)
    files = sorted(name for name in [*COPIED, *EXTRACTS] if not name.endswith((".md", ".json")))
    lines = [f"{hashlib.sha256((HERE / n).read_bytes()).hexdigest()}  {n}" for n in files]
    (HERE / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
