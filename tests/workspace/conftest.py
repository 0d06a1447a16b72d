"""Fixtures of the workspace tests: the demo world at a tiny scale, and gateways serving copies of it.

The world is ``sandbox.demo.world.build_world`` (the one ``make demo`` builds) with 2,000 synthetic
residents and the shared dataset ``adult``, plus ``tina`` of organisation ``tinyco`` whose policy
on ``residents`` holds epsilon 0.3 only (to exhaust a budget). ``hub`` runs a real JupyterHub on a
copy of it (tests marked ``hub``).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from live_gateway import running_gateway
from workspace_support import PASSWORD, SHARED_METADATA, SYSTEM, Gateway, Hub

from sandbox.audit.checkpoints import PRIVATE_KEY_FILE, generate_key
from sandbox.catalog.registry import Catalog
from sandbox.cli.service import settings_template
from sandbox.control import ControlPlane
from sandbox.demo import isolation
from sandbox.demo.hub import HubPorts, HubProcess
from sandbox.demo.world import DEMO_USERS, DemoUser, build_world, write_directory
from sandbox.errors import InvalidRequest
from sandbox.principals import Role
from sandbox.settings import SETTINGS_FILE, Settings

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


@pytest.fixture(scope="session")
def server_python() -> Iterator[str | None]:
    """The interpreter of the servers and the gateway in isolation mode (root): this environment,
    or a copy of it in a folder every user can read (the checkout may sit in a private folder);
    None when not root, or when no such runtime can be built here (the reason is printed once)."""
    if not SYSTEM:
        yield None
        return
    folder = Path(tempfile.mkdtemp(prefix="sbx-hub-python-"))
    folder.chmod(0o755)
    try:
        yield str(isolation.shared_interpreter(folder))
    except InvalidRequest as impossible:
        print(f"\nper-user isolation off in the hub tests: {impossible.message}")
        yield None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def hub(
    world_template: Path, server_python: str | None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hub]:
    """A real JupyterHub (one per test module) with the gateway as its service, on a copy of the world."""
    suffix = secrets.token_hex(3)
    analyst, outsider = f"ana{suffix}", f"out{suffix}"
    gateway_user = f"sbxgw{suffix}" if server_python is not None else None
    # the gateway home may not sit under pytest's root-only basetemp: its own user must reach it
    private = Path(tempfile.mkdtemp(prefix="sbx-hub-home-"))
    home = private / "home"
    shutil.copytree(world_template, home)
    # what `sandbox init` and `sandbox audit keygen` add to a production home: the isolation test
    # checks that no user can read them
    (home / SETTINGS_FILE).write_text(settings_template(), encoding="utf-8")
    if not (Settings(home=home).keys_dir / PRIVATE_KEY_FILE).exists():
        generate_key(Settings(home=home).keys_dir)
    with ControlPlane(Settings(home=home)) as control:
        control.add_user(analyst, [Role.ANALYST], "acme", actor="test")
    base = tmp_path_factory.mktemp("hub")
    directory = base / "directory.json"
    write_directory(directory, (*DEMO_USERS, DemoUser(analyst, Role.ANALYST, "acme", "test")), [outsider])
    environment = {
        "SANDBOX_LOCAL_STATE": str(base / "state"),
        "SANDBOX_HOME": str(home),
        "SANDBOX_LOCAL_DIRECTORY": str(directory),
        "SANDBOX_LOCAL_HOMES": str(base / "users"),
        "SANDBOX_LOCAL_USER_PASSWORD": PASSWORD,
        "SANDBOX_LOCAL_PROVISIONER_TOKEN": secrets.token_hex(32),
        "SANDBOX_LOCAL_SPAWNER": "system" if gateway_user is not None else "simple",
        "SANDBOX_LOCAL_LOG_LEVEL": "WARN",
    }
    if gateway_user is not None and server_python is not None:
        isolation.ensure_unix_user(gateway_user, service=True)
        isolation.ensure_unix_user(analyst)
        isolation.ensure_unix_user(outsider)
        isolation.make_private(private, gateway_user)
        environment["SANDBOX_LOCAL_GATEWAY_USER"] = gateway_user
        environment["SANDBOX_LOCAL_PYTHON"] = server_python
    process = HubProcess(HubPorts.free(), environment, base / "hub.log")
    admin = httpx.Client(
        base_url=f"{process.public_url}/hub/api",
        headers={"Authorization": f"token {environment['SANDBOX_LOCAL_PROVISIONER_TOKEN']}"},
        timeout=60,
    )
    try:
        process.start()
        process.wait_ready(180)
        yield Hub(process, home, admin, analyst, outsider, gateway_user)
    finally:
        admin.close()
        process.stop()
        if gateway_user is not None:
            isolation.remove_unix_user(analyst)
            isolation.remove_unix_user(outsider)
            isolation.remove_unix_user(gateway_user)
        shutil.rmtree(private, ignore_errors=True)
