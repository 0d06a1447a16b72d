"""``python -m sandbox.demo`` (``make demo``): the analyst workspace on 127.0.0.1, idempotently.

Builds (or reuses) the demo world under ``.demo/``, starts JupyterHub, which starts the gateway as
its service, prints the URL and the logins, and stops every process it started on Ctrl-C. Nothing
outside the checkout is needed: the synthetic province comes from the project's generator and the
public datasets from the repository's extracts (``data/``), or from the full shared folder when it
is found (``$SANDBOX_SHARED_DATA`` or ``../shared/data``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from sandbox.catalog.registry import Catalog
from sandbox.demo import isolation
from sandbox.demo.hub import REPO, HubPorts, HubProcess, free_port
from sandbox.demo.world import (
    DEMO_USERS,
    PENDING_DATASET,
    STAGED_DATASET,
    SYNTHETIC,
    World,
    build_world,
    write_directory,
)
from sandbox.errors import InvalidRequest
from sandbox.settings import Settings

DEFAULT_RESIDENTS = 200_000
DEFAULT_PASSWORD = "sandbox-demo"
NOTEBOOKS = REPO / "notebooks"
SHARED_METADATA = REPO / "deploy" / "datasets" / "shared"
REPOSITORY_DATA = REPO / "data"
READY_TIMEOUT = 300.0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.demo",
        description="Run the sandbox workspace locally: JupyterHub + the gateway on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=8000, help="public port of JupyterHub (default 8000)")
    parser.add_argument(
        "--residents", type=int, default=DEFAULT_RESIDENTS, help="synthetic residents (default 200000)"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("SANDBOX_DEMO_DIR", REPO / ".demo")),
        help="demo folder",
    )
    parser.add_argument(
        "--no-isolation",
        action="store_true",
        help="as root: run every server as root too (no per-user Unix accounts; kernels could read the data)",
    )
    parser.add_argument(
        "--prepare-only", action="store_true", help="build the demo world, do not start the hub"
    )
    return parser.parse_args(argv)


def _public_data() -> tuple[Path, str]:
    """Where the public datasets come from, and how to say so: the full shared folder when found,
    else the repository's extracts."""
    named = os.environ.get("SANDBOX_SHARED_DATA")
    if named:
        if not (Path(named) / "SHA256SUMS").exists():
            sys.exit(f"SANDBOX_SHARED_DATA={named} is not the shared data folder (it has no SHA256SUMS)")
        return Path(named), f"the full shared datasets in {named}"
    beside = REPO.parent / "shared" / "data"
    if (beside / "SHA256SUMS").exists():
        return beside, f"the full shared datasets in {beside}"
    return REPOSITORY_DATA, (
        f"the repository's extracts in {REPOSITORY_DATA} (set SANDBOX_SHARED_DATA for the full tables)"
    )


def _registered(world: World, settings: Settings, public: str) -> str:
    """What the demo registered, for the console."""
    catalog = Catalog(settings.home_dir)
    lines = [f"registered {len(world.datasets)} datasets (public data: {public}):"]
    for name in world.datasets:
        metadata = catalog.get(name).metadata
        origin = "synthetic province (sandbox generator)" if name in SYNTHETIC else "public"
        tables = ", ".join(t.name for t in metadata.tables)
        lines.append(
            f"  {name:<15} {metadata.classification.value:<10} {metadata.owner:<19} {tables:<15} {origin}"
        )
    lines.append(f"  approved for acme (alice, bob): {', '.join(world.approved)}")
    lines.append(
        f"  pending request of acme: {PENDING_DATASET}; staged for registration: {STAGED_DATASET}.yaml"
    )
    return "\n".join(lines)


def _server_python(folder: Path) -> Path | None:
    """The interpreter every user can run (see ``isolation.shared_interpreter``), or None, said in one
    line, where none can be built."""
    print("preparing the runtime of the per-user servers ...")
    try:
        return isolation.shared_interpreter(folder)
    except InvalidRequest as impossible:
        print(f"per-user isolation OFF: {impossible.message}")
        return None


def _copy_notebooks(target: Path, owner: str | None) -> None:
    """Put the walkthrough notebooks into a user's notebook folder (never over the user's copies)."""
    folder = target / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        if not (folder / notebook.name).exists():
            shutil.copyfile(notebook, folder / notebook.name)
    if owner is not None:
        isolation.give_to(folder, owner)


def _banner(url: str, password: str, system: bool, seconds: float) -> str:
    lines = [
        "",
        f"sandbox workspace ready in {seconds:.0f} s: {url}",
        f"  password for every demo login: {password}",
        "",
        f"  {'login':<12} {'role':<9} {'organisation':<19} what to do",
    ]
    for user in DEMO_USERS:
        lines.append(f"  {user.name:<12} {user.role.value:<9} {user.organisation or '-':<19} {user.note}")
    lines += [
        "",
        "  log in as alice and open notebooks/01_analyst_quickstart.ipynb",
        f"  web console (owners, operators, analysts; same logins): {url}/services/sandbox-gateway/console/",
        f"  gateway API (OpenAPI): {url}/services/sandbox-gateway/docs",
        "  isolation: "
        + (
            "each user's server runs as their own Unix user; only the gateway's user can read the data"
            if system
            else "OFF (servers run as this Unix user and could read the data files)"
        ),
        "  Ctrl-C stops everything this command started.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build or reuse the demo, run the hub until Ctrl-C."""
    args = _arguments(argv)
    system = isolation.is_root() and not args.no_isolation
    demo = isolation.demo_folder(args.dir.resolve()) if system else args.dir.resolve()
    if demo != args.dir.resolve():
        print(f"{args.dir} is inside a folder other users cannot enter: the demo lives in {demo}")
    demo.mkdir(parents=True, exist_ok=True)
    demo.chmod(0o755)
    home = demo / "home"
    settings = Settings(home=home, auth_mode="tokens")
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "sandbox.cli", "--home", str(home), "init"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    public_data, public = _public_data()
    world = build_world(
        settings, shared_data=public_data, shared_metadata=SHARED_METADATA, residents=args.residents
    )
    directory = demo / "directory.json"
    write_directory(directory)
    environment = {
        "SANDBOX_LOCAL_STATE": str(demo / "hub"),
        "SANDBOX_HOME": str(home),
        "SANDBOX_LOCAL_DIRECTORY": str(directory),
        "SANDBOX_LOCAL_HOMES": str(demo / "users"),
        "SANDBOX_LOCAL_USER_PASSWORD": os.environ.get("SANDBOX_LOCAL_USER_PASSWORD", DEFAULT_PASSWORD),
        "SANDBOX_LOCAL_SPAWNER": "simple",
    }
    python = _server_python(demo / "python") if system else None
    if python is not None:
        gateway_user = isolation.GATEWAY_USER
        isolation.ensure_unix_user(gateway_user, service=True)
        isolation.make_private(home, gateway_user)
        environment["SANDBOX_LOCAL_SPAWNER"] = "system"
        environment["SANDBOX_LOCAL_GATEWAY_USER"] = gateway_user
        environment["SANDBOX_LOCAL_PYTHON"] = str(python)
        for user in DEMO_USERS:
            isolation.ensure_unix_user(user.name)
            _copy_notebooks(isolation.home_of(user.name), user.name)
    else:
        for user in DEMO_USERS:
            _copy_notebooks(demo / "users" / user.name, None)
    print(_registered(world, settings, public))
    print(f"demo world ready: {len(world.datasets)} datasets, {len(world.users)} users (in {demo})")
    if args.prepare_only:
        return 0

    ports = HubPorts(args.port, free_port(), free_port(), free_port())
    hub = HubProcess(ports, environment, demo / "hub" / "jupyterhub.log")
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"starting JupyterHub on http://127.0.0.1:{args.port} (log: {hub.log_path}) ...")
    hub.start()
    try:
        hub.wait_ready(READY_TIMEOUT)
        print(
            _banner(
                hub.public_url,
                environment["SANDBOX_LOCAL_USER_PASSWORD"],
                python is not None,
                time.monotonic() - started,
            )
        )
        while not stopping and hub.running():
            time.sleep(1)
            hub.track()
        if not stopping:
            print(f"JupyterHub exited; last log lines:\n{hub.log_tail()}", file=sys.stderr)
            return 1
        return 0
    finally:
        print("stopping ...")
        leftovers = hub.stop()
        print(f"stopped{f' ({leftovers} leftover processes ended)' if leftovers else ''}.")


if __name__ == "__main__":
    raise SystemExit(main())
