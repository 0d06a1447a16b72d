"""``python -m sandbox.demo`` (``make demo``): the analyst workspace on 127.0.0.1, idempotently.

Builds (or reuses) the demo world under ``.demo/``, starts JupyterHub, which starts the gateway as
its service, prints the URL and the logins, and stops every process it started on Ctrl-C.
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

from sandbox.demo import isolation
from sandbox.demo.hub import REPO, HubPorts, HubProcess, free_port
from sandbox.demo.world import DEMO_USERS, build_world, write_directory
from sandbox.settings import Settings

DEFAULT_RESIDENTS = 200_000
DEFAULT_PASSWORD = "sandbox-demo"
NOTEBOOKS = REPO / "notebooks"
SHARED_METADATA = REPO / "deploy" / "datasets" / "shared"
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


def _shared_data() -> Path:
    path = Path(os.environ.get("SANDBOX_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not (path / "README.md").exists():
        sys.exit(f"shared public datasets not found at {path}: set SANDBOX_SHARED_DATA to their folder")
    return path


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
    demo = args.dir.resolve()
    demo.mkdir(parents=True, exist_ok=True)
    demo.chmod(0o755)
    system = isolation.is_root() and not args.no_isolation
    home = demo / "home"
    settings = Settings(home=home, auth_mode="tokens")
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "sandbox.cli", "--home", str(home), "init"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    world = build_world(
        settings, shared_data=_shared_data(), shared_metadata=SHARED_METADATA, residents=args.residents
    )
    directory = demo / "directory.json"
    write_directory(directory)
    environment = {
        "SANDBOX_LOCAL_STATE": str(demo / "hub"),
        "SANDBOX_HOME": str(home),
        "SANDBOX_LOCAL_DIRECTORY": str(directory),
        "SANDBOX_LOCAL_HOMES": str(demo / "users"),
        "SANDBOX_LOCAL_USER_PASSWORD": os.environ.get("SANDBOX_LOCAL_USER_PASSWORD", DEFAULT_PASSWORD),
        "SANDBOX_LOCAL_SPAWNER": "system" if system else "simple",
    }
    if system:
        gateway_user = isolation.GATEWAY_USER
        isolation.ensure_unix_user(gateway_user, service=True)
        isolation.make_private(home, gateway_user)
        environment["SANDBOX_LOCAL_GATEWAY_USER"] = gateway_user
        environment["SANDBOX_LOCAL_PYTHON"] = str(isolation.shared_interpreter(demo / "python"))
        for user in DEMO_USERS:
            isolation.ensure_unix_user(user.name)
            _copy_notebooks(isolation.home_of(user.name), user.name)
    else:
        for user in DEMO_USERS:
            _copy_notebooks(demo / "users" / user.name, None)
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
                hub.public_url, environment["SANDBOX_LOCAL_USER_PASSWORD"], system, time.monotonic() - started
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
