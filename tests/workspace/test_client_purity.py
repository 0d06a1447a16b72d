"""The client is pure: importing it loads neither the engine, DuckDB, OpenDP nor sqlglot."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = (
    "duckdb",
    "opendp",
    "sqlglot",
    "sqlalchemy",
    "fastapi",
    "sandbox.query",
    "sandbox.catalog",
    "sandbox.control",
)


def test_importing_the_client_and_magic_loads_no_engine_module() -> None:
    code = (
        "import json, sys; import sandbox.client, sandbox.magic; "
        "print(json.dumps(sorted(m for m in sys.modules)))"
    )
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    )
    offending = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert offending == []
    assert "httpx" in loaded and "pandas" in loaded
