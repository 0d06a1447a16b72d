"""Fixtures of the console tests: the world served by a real gateway on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_support import ConsoleWorld, build_world
from live_gateway import running_gateway


@pytest.fixture(scope="session")
def console_world(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Iterator[ConsoleWorld]:
    """The console world, served by a real gateway."""
    home = tmp_path_factory.mktemp("console") / "home"
    world = build_world(home, shared_data)
    with running_gateway(world.settings) as base_url:
        world.base_url = base_url
        yield world
