"""The demo world is idempotent: a second build reuses every dataset, user, policy and request."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from workspace_support import SHARED_METADATA

from sandbox.control import ControlPlane
from sandbox.demo.world import DEMO_USERS, build_world, write_directory
from sandbox.principals import Principal, Role
from sandbox.settings import Settings

OPERATOR = Principal("test", frozenset({Role.OPERATOR}))


def _events(settings: Settings) -> int:
    with ControlPlane(settings) as control:
        return len(control.audit_events(OPERATOR))


def test_a_second_build_adds_nothing(world_template: Path, tmp_path: Path, shared_data: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(world_template, home)
    settings = Settings(home=home)
    before = _events(settings)
    lines: list[str] = []
    world = build_world(
        settings,
        shared_data=shared_data,
        shared_metadata=SHARED_METADATA,
        residents=2_000,
        shared=frozenset({"adult"}),
        log=lines.append,
    )
    assert lines == [] and _events(settings) == before
    assert {"residents", "medical_visits", "bus_trips", "adult"} <= set(world.datasets)
    assert "pums" not in world.datasets and (settings.effective_import_dir / "pums.yaml").exists()
    with ControlPlane(settings) as control:
        policy = control.get_policy(OPERATOR, world.policy_id)
        request = control.get_request(OPERATOR, world.pending_request_id)
    assert (policy.organisation, policy.dataset, policy.status) == ("acme", "residents", "active")
    assert (request.dataset, request.status) == ("adult", "pending")


def test_the_hub_directory_lists_every_demo_user(tmp_path: Path) -> None:
    write_directory(tmp_path / "directory.json", others=["guest"])
    document = json.loads((tmp_path / "directory.json").read_text(encoding="utf-8"))
    assert [u["name"] for u in document["users"]] == [u.name for u in DEMO_USERS]
    assert {u["organisation"] for u in document["users"] if u["roles"] == ["analyst"]} == {"acme"}
    assert document["others"] == ["guest"]
