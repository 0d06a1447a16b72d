"""Every command's happy path, plus exit code 1 (refused) and 2 (usage error)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import Result

from sandbox.catalog.registry import Catalog
from sandbox.control import ControlPlane
from sandbox.settings import load_settings
from sandbox.store.db import Store
from sandbox.store.models import AuditEvent

REPO = Path(__file__).resolve().parents[2]
PUMS_YAML = REPO / "deploy" / "datasets" / "shared" / "pums.yaml"
Run = Callable[..., Result]


def json_out(result: Result) -> Any:
    """The command's stdout parsed as JSON."""
    return json.loads(result.stdout)


def test_init_is_idempotent_and_private(home: Path, sandbox: Run) -> None:
    again = sandbox("init")
    assert again.exit_code == 0, again.output
    settings_file = home / "settings.env"
    assert stat.S_IMODE(settings_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert "SANDBOX_RATE_LIMIT_PER_MINUTE" in settings_file.read_text()
    assert (home / "state.db").exists() and (home / "import").is_dir()
    assert sandbox("db", "upgrade").exit_code == 0


def test_users(sandbox: Run) -> None:
    assert sandbox("user", "add", "alice", "--role", "analyst", "--org", "acme").exit_code == 0
    assert sandbox("user", "add", "olivia", "--role", "owner", "--org", "census-bureau").exit_code == 0
    both = sandbox("user", "add", "omar", "--role", "owner", "--role", "operator", "--org", "census-bureau")
    assert both.exit_code == 0, both.output
    listed = {u["name"]: u for u in json_out(sandbox("user", "list", "--json"))}
    assert listed["omar"]["roles"] == ["operator", "owner"]
    assert listed["alice"]["organisation"] == "acme"
    duplicate = sandbox("user", "add", "alice", "--role", "analyst", "--org", "acme")
    assert duplicate.exit_code == 1 and "user.exists" in duplicate.stderr
    assert sandbox("user", "add", "zed", "--role", "analyst").exit_code == 1  # analysts need an org
    assert sandbox("user", "add", "zed", "--role", "wizard").exit_code == 2
    assert sandbox("user", "add", "zed").exit_code == 2


def test_tokens(sandbox: Run) -> None:
    created = sandbox("token", "create", "alice", "--ttl-days", "7", "--note", "laptop")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("sbx_") and "\n" not in token
    assert token not in created.stderr
    (view,) = [t for t in json_out(sandbox("token", "list", "--json")) if t["note"] == "laptop"]
    assert view["username"] == "alice" and view["revoked_at"] is None
    assert token not in sandbox("token", "list", "--json").stdout
    assert sandbox("token", "revoke", view["id"]).exit_code == 0
    assert sandbox("token", "revoke", view["id"]).exit_code == 1
    assert sandbox("token", "create", "nobody").exit_code == 1
    assert sandbox("token", "create", "alice", "--ttl-days", "0").exit_code == 2


def test_dataset_register_list_certificate(
    sandbox: Run, shared_data: Path, tmp_path: Path, os_user: str
) -> None:
    registered = sandbox("dataset", "register", str(PUMS_YAML), "--source-root", str(shared_data))
    assert registered.exit_code == 0, registered.output
    assert "registered pums" in registered.stdout
    assert "rows" in registered.stderr  # the progress bar
    again = sandbox("dataset", "register", str(PUMS_YAML), "--source-root", str(shared_data))
    assert again.exit_code == 1 and "catalog.dataset_exists" in again.stderr
    assert sandbox("dataset", "register", str(tmp_path / "missing.yaml")).exit_code == 2
    (listed,) = json_out(sandbox("dataset", "list", "--json"))
    assert listed["metadata"]["dataset"] == "pums" and len(listed["version"]) == 64
    certificate_file = tmp_path / "certificate.json"
    assert sandbox("dataset", "certificate", "pums", "-o", str(certificate_file)).exit_code == 0
    certificate = json.loads(certificate_file.read_text())
    printed = json.loads(sandbox("dataset", "certificate", "pums").stdout)
    assert certificate["dataset"] == printed["dataset"] == "pums"
    assert certificate["registration_event"]["actor"] == os_user
    assert certificate["registration_event"]["via"] == f"os:{os_user}"
    verified = sandbox("dataset", "verify-certificate", str(certificate_file))
    assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"] is True
    assert sandbox("dataset", "certificate", "nothing").exit_code == 1


def test_dataset_generate_and_register(sandbox: Run, tmp_path: Path) -> None:
    result = sandbox("dataset", "generate", "--out", str(tmp_path / "synthetic"), "--n", "2000", "--register")
    assert result.exit_code == 0, result.output
    names = {d["metadata"]["dataset"] for d in json_out(sandbox("dataset", "list", "--json"))}
    assert {"residents", "medical_visits", "bus_trips"} <= names
    assert "residents" in result.stderr  # the progress bar
    assert sandbox("dataset", "generate", "--n", "10").exit_code == 2  # --out is required


def _pending_request(home: Path, purpose: str) -> str:
    settings = load_settings(home)
    record = Catalog(settings.home_dir).get("pums")
    with ControlPlane(settings) as control:
        alice = control.get_principal("alice")
        request = control.request_access(
            alice,
            record,
            purpose=purpose,
            columns=["age", "sex"],
            epsilon=2.0,
            delta=0.0,
            valid_until=datetime(2032, 1, 1, tzinfo=UTC),
        )
    return request.id


def test_requests_and_policies(home: Path, sandbox: Run) -> None:
    first = _pending_request(home, "first")
    pending = json_out(sandbox("request", "list", "--status", "pending", "--json"))
    assert first in {r["id"] for r in pending}
    assert sandbox("request", "approve", first).exit_code == 2  # --max-epsilon-per-query missing
    approved = sandbox(
        "request", "approve", first, "--max-epsilon-per-query", "0.5", "--epsilon", "1.5",
        "--aggregate", "count", "--aggregate", "avg", "--valid-until", "2031-01-01", actor="olivia",
    )  # fmt: skip
    assert approved.exit_code == 0, approved.output
    (policy,) = json_out(sandbox("policy", "list", "--json"))
    assert policy["epsilon"] == 1.5 and sorted(policy["aggregates"]) == ["avg", "count"]
    assert policy["approved_by"] == "olivia"
    assert sandbox("request", "approve", first, "--max-epsilon-per-query", "0.5").exit_code == 1

    second = _pending_request(home, "second")
    assert sandbox("request", "reject", second).exit_code == 2  # --reason missing
    assert sandbox("request", "reject", second, "--reason", "not now").exit_code == 0
    statuses = {r["id"]: r["status"] for r in json_out(sandbox("request", "list", "--json"))}
    assert statuses[first] == "approved" and statuses[second] == "rejected"

    assert sandbox("policy", "revoke", policy["id"], "--reason", "study ended").exit_code == 0
    assert sandbox("policy", "revoke", policy["id"], "--reason", "again").exit_code == 1
    assert sandbox("policy", "revoke", "pol_missing", "--reason", "x").exit_code == 1


def test_audit_and_usage(home: Path, sandbox: Run, tmp_path: Path, os_user: str) -> None:
    assert sandbox("audit", "checkpoint").exit_code == 1  # no key yet
    assert sandbox("audit", "keygen").exit_code == 0
    assert sandbox("audit", "keygen").exit_code == 1
    assert sandbox("audit", "checkpoint").exit_code == 0
    verified = sandbox("audit", "verify")
    assert verified.exit_code == 0 and "1/1 checkpoints verified" in verified.stdout

    events = json_out(sandbox("audit", "list", "--type", "user.added", "--json"))
    assert [e["payload"]["username"] for e in events] == ["alice", "olivia", "omar"]
    assert {(e["actor"], e["via"]) for e in events} == {(os_user, f"os:{os_user}")}
    exported = tmp_path / "audit.csv"
    assert sandbox("audit", "export", "--format", "csv", "-o", str(exported)).exit_code == 0
    assert exported.read_text().startswith("seq,type,time")
    lines = sandbox("audit", "export", "--actor", "olivia").stdout.splitlines()
    assert lines and all(json.loads(line)["actor"] == "olivia" for line in lines)
    assert sandbox("audit", "export", "--format", "xml").exit_code == 2
    assert sandbox("audit", "list", "--since", "yesterday").exit_code == 2

    usage = json_out(sandbox("usage", "--json"))
    assert "rows" in usage

    store = Store(load_settings(home).state_db_url)
    with store.write_transaction() as session:
        event = session.get(AuditEvent, 2)
        assert event is not None
        event.actor = "someone-else"
    store.dispose()
    broken = sandbox("audit", "verify")
    assert broken.exit_code == 1 and "BROKEN at event 2" in broken.stderr


def test_serve_runs_a_gateway(tmp_path: Path) -> None:
    home = tmp_path / "served"
    env = {**os.environ, "SANDBOX_HOME": str(home)}
    command = [sys.executable, "-m", "sandbox.cli"]
    refused = subprocess.run([*command, "serve"], env=env, capture_output=True, timeout=120, check=False)
    assert refused.returncode == 1 and b"run `sandbox init`" in refused.stderr
    assert not home.exists()  # nothing created, no empty world-readable state database
    subprocess.run([*command, "init"], env=env, capture_output=True, timeout=120, check=True)
    port = _free_port()
    server = subprocess.Popen(
        [*command, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert response.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/me").status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_help_imports_no_engine() -> None:
    heavy = "('duckdb', 'opendp', 'fastapi', 'pyarrow')"
    code = f"import sys, sandbox.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("args", [["--help"], ["dataset", "--help"], ["request", "approve", "--help"]])
def test_help_on_every_level(sandbox: Run, args: list[str]) -> None:
    result = sandbox(*args)
    assert result.exit_code == 0 and "Usage" in result.stdout


def test_unknown_command_is_a_usage_error(sandbox: Run) -> None:
    assert sandbox("frobnicate").exit_code == 2


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
