"""Fixtures of the workspace tests: the demo world at a tiny scale, and gateways serving copies of it.

The world is ``sandbox.demo.world.build_world`` (the one ``make demo`` builds) with 2,000 synthetic
residents and the shared dataset ``adult``, plus ``tina`` of organisation ``tinyco`` whose policy
on ``residents`` holds epsilon 0.3 only (to exhaust a budget).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from workspace_support import SHARED_METADATA, Gateway, running_gateway

from sandbox.catalog.registry import Catalog
from sandbox.control import ControlPlane
from sandbox.demo.world import DEMO_USERS, build_world
from sandbox.principals import Role
from sandbox.settings import Settings

RESIDENTS = 2_000
SMALL_ORG_USER = "tina"


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A gateway home holding the demo world (copied by every gateway fixture)."""
    home = tmp_path_factory.mktemp("world") / "home"
    settings = Settings(home=home)
    build_world(
        settings,
        shared_data=shared_data,
        shared_metadata=SHARED_METADATA,
        residents=RESIDENTS,
        shared=frozenset({"adult"}),
        log=lambda _line: None,
    )
    residents = Catalog(home).get("residents")
    with ControlPlane(settings) as control:
        tina = control.add_user(SMALL_ORG_USER, [Role.ANALYST], "tinyco", actor="test")
        request = control.request_access(
            tina,
            residents,
            purpose="budget exhaustion test",
            columns=["district_code", "age"],
            epsilon=0.3,
            delta=0.0,
            valid_until=datetime.now(UTC) + timedelta(days=1),
        )
        control.approve(control.get_principal("civil"), request.id, residents, max_epsilon_per_query=0.2)
    return home


def _serve_copy(template: Path, home: Path) -> Iterator[Gateway]:
    shutil.copytree(template, home)
    settings = Settings(home=home, auth_mode="tokens")
    with ControlPlane(settings) as control:
        names = [u.name for u in DEMO_USERS] + [SMALL_ORG_USER]
        tokens = {name: control.issue_token(name, actor="test").token for name in names}
    with running_gateway(settings) as url:
        yield Gateway(url, home, tokens)


@pytest.fixture(scope="session")
def gateway(world_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway for the client and magic tests."""
    yield from _serve_copy(world_template, tmp_path_factory.mktemp("client-gateway") / "home")


@pytest.fixture(scope="session")
def notebook_gateway(world_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A separate gateway for the notebooks (they approve requests and spend budget)."""
    yield from _serve_copy(world_template, tmp_path_factory.mktemp("notebook-gateway") / "home")
