"""The CLI's actors are verified: ``--as`` must name a registered, enabled user holding the role
the command needs for that dataset (refusals are audit events); the OS user is recorded too. And
the owner's and operator's governance commands: caps, amend, budgets, sweeps, verification."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from typer.testing import Result

from sandbox.catalog.registry import Catalog
from sandbox.control import ControlPlane
from sandbox.settings import load_settings
from sandbox.store.db import make_engine
from sandbox.store.models import Policy

Run = Any


def json_out(result: Result) -> Any:
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def world(home: Path, sandbox: Run, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Users of two bodies and one analyst; the synthetic datasets registered; one pending request."""
    out = tmp_path_factory.mktemp("synthetic")
    generated = sandbox("dataset", "generate", "--out", str(out), "--n", "500", "--register")
    assert generated.exit_code == 0, generated.output
    for args in (
        ("alice", "--role", "analyst", "--org", "acme"),
        ("carla", "--role", "owner", "--org", "civil-affairs"),
        ("census", "--role", "owner", "--org", "census-bureau"),
        ("oper", "--role", "operator"),
    ):
        assert sandbox("user", "add", *args).exit_code == 0
    return request(home, "residents")


def request(home: Path, dataset: str, columns: tuple[str, ...] = ("age",)) -> str:
    settings = load_settings(home)
    record = Catalog(settings.home_dir).get(dataset)
    with ControlPlane(settings) as control:
        return control.request_access(
            control.get_principal("alice"),
            record,
            purpose="study",
            columns=list(columns),
            epsilon=2.0,
            delta=0.0,
            valid_until=datetime(2032, 1, 1, tzinfo=UTC),
        ).id


def test_as_an_unregistered_or_wrong_body_user_is_refused_and_recorded(
    world: str, sandbox: Run, os_user: str
) -> None:
    wrong_body = sandbox("request", "approve", world, "--max-epsilon-per-query", "0.5", actor="census")
    assert wrong_body.exit_code == 1 and "auth.actor_lacks_role" in wrong_body.stderr
    assert "civil-affairs" in wrong_body.stderr
    ghost = sandbox("request", "reject", world, "--reason", "no", actor="ghost")
    assert ghost.exit_code == 1 and "auth.unknown_actor" in ghost.stderr
    analyst = sandbox("user", "add", "eve", "--role", "operator", actor="alice")
    assert analyst.exit_code == 1 and "auth.actor_lacks_role" in analyst.stderr
    [pending] = [r for r in json_out(sandbox("request", "list", "--json")) if r["id"] == world]
    assert pending["status"] == "pending"  # nothing was decided
    refused = json_out(sandbox("audit", "list", "--type", "auth.refused", "--json"))
    failed = json_out(sandbox("audit", "list", "--type", "auth.failed", "--json"))
    assert [(e["actor"], e["via"], e["payload"]["code"]) for e in refused] == [
        ("census", f"os:{os_user}", "auth.actor_lacks_role"),
        ("alice", f"os:{os_user}", "auth.actor_lacks_role"),
    ]
    assert [(e["actor"], e["payload"]["code"]) for e in failed] == [("ghost", "auth.unknown_actor")]
    assert not any(
        e["actor"] in {"census", "ghost"}
        for e in json_out(sandbox("audit", "list", "--type", "access.approved", "--json"))
    )


def test_the_right_owner_decides_and_both_identities_are_recorded(
    world: str, sandbox: Run, os_user: str
) -> None:
    approved = sandbox("request", "approve", world, "--max-epsilon-per-query", "0.5", actor="carla")
    assert approved.exit_code == 0, approved.output
    assert "acme has spent epsilon 0 on this dataset over its earlier policies (no cap)" in approved.stderr
    [event] = json_out(sandbox("audit", "list", "--type", "access.approved", "--json"))
    assert (event["actor"], event["via"]) == ("carla", f"os:{os_user}")
    assert sandbox("user", "disable", "carla", actor="oper").exit_code == 0
    disabled = sandbox("budget", "cap", "residents", "--epsilon", "1", actor="carla")
    assert disabled.exit_code == 1 and "auth.actor_disabled" in disabled.stderr
    assert sandbox("user", "enable", "carla", actor="oper").exit_code == 0


def test_caps_amend_budget_sweep_and_verification(
    world: str, home: Path, sandbox: Run, tmp_path: Path
) -> None:
    [policy] = json_out(sandbox("policy", "list", "--json"))
    capped = sandbox("budget", "cap", "residents", "--epsilon", "3", "--org", "acme", actor="carla")
    assert capped.exit_code == 0, capped.output
    amended = sandbox(
        "policy", "amend", policy["id"], "--epsilon", "2.5", "--reason", "phase two", actor="carla"
    )
    assert amended.exit_code == 0, amended.output
    [budget] = json_out(sandbox("budget", "--json"))
    assert json_out(sandbox("budget", "show", "--json")) == [budget]
    assert (budget["epsilon_granted"], budget["lifetime_epsilon_cap"]) == (2.5, 3.0)
    [event] = json_out(sandbox("audit", "list", "--type", "policy.amended", "--json"))
    assert event["payload"]["old"] == {"epsilon": "2"} and event["payload"]["new"] == {"epsilon": "2.5"}
    assert "expired 0 policies" in sandbox("sweep").stdout

    assert sandbox("audit", "keygen").exit_code == 0
    assert sandbox("audit", "checkpoint", actor="oper").exit_code == 0
    off_host = tmp_path / "off-host-checkpoints.jsonl"
    shutil.copyfile(home / "audit" / "checkpoints.jsonl", off_host)
    verified = sandbox("audit", "verify", "--checkpoints", str(off_host))
    assert verified.exit_code == 0 and "stored state proven" in verified.stdout
    export = tmp_path / "audit.jsonl"
    assert sandbox("audit", "export", "-o", str(export)).exit_code == 0
    public_key = next((home / "keys").glob("*pub*"))
    offline = sandbox("audit", "verify-export", str(export), "--public-key", str(public_key))
    assert offline.exit_code == 0 and "1/1 checkpoints verified" in offline.stdout, offline.output
    certificate = tmp_path / "certificate.json"
    assert sandbox("dataset", "certificate", "residents", "-o", str(certificate)).exit_code == 0
    checked = sandbox(
        "audit",
        "verify-export",
        str(export),
        "--public-key",
        str(public_key),
        "--certificate",
        str(certificate),
    )
    assert checked.exit_code == 0, checked.output
    altered = tmp_path / "altered.jsonl"
    altered.write_text(export.read_text().replace('"phase two"', '"phase 2"'))
    broken = sandbox("audit", "verify-export", str(altered), "--public-key", str(public_key))
    assert broken.exit_code == 1 and "was altered" in broken.stderr

    engine = make_engine(load_settings(home).state_db_url)
    with engine.begin() as connection:
        connection.execute(update(Policy).values(epsilon_granted=9_000_000_000))
    engine.dispose()
    tampered = sandbox("audit", "verify")
    assert tampered.exit_code == 1
    assert (
        f"DIVERGES policies {policy['id']} epsilon_granted: chain 2500000000, stored 9000000000"
        in tampered.stderr
    )


def test_an_analyst_withdraws_a_pending_request(world: str, home: Path, sandbox: Run) -> None:
    pending = request(home, "residents", ("sex",))
    unnamed = sandbox("request", "withdraw", pending)
    assert unnamed.exit_code == 1 and "cli.as_required" in unnamed.stderr
    assert sandbox("request", "withdraw", pending, actor="carla").exit_code == 1  # an owner, not an analyst
    assert sandbox("request", "withdraw", pending, actor="alice").exit_code == 0
    [withdrawn] = [r for r in json_out(sandbox("request", "list", "--json")) if r["id"] == pending]
    assert withdrawn["status"] == "withdrawn"
