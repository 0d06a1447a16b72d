"""Fixtures of the gateway tests: one populated home and one real uvicorn server per session.

- ``world``: the populated home (see ``gateway_support``) with ``base_url`` of the running gateway.
- ``control``: a control plane on the same state store, for checks from the test side.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_support import World, build_world
from live_gateway import running_gateway

from sandbox.control import ControlPlane


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[World]:
    """The populated home, served by a real gateway on 127.0.0.1."""
    home = tmp_path_factory.mktemp("gateway") / "home"
    built = build_world(home, shared_data, rate_limit_per_minute=100_000)
    with running_gateway(built.settings) as base_url:
        built.base_url = base_url
        yield built


@pytest.fixture(scope="session")
def control(world: World) -> Iterator[ControlPlane]:
    """The test side's control plane on the gateway's state store."""
    with ControlPlane(world.settings) as plane:
        yield plane
