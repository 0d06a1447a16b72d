"""Unix-level isolation for the local hub when run as root (``SANDBOX_LOCAL_SPAWNER=system``).

Each hub user's server runs as a Unix user of the same name; the gateway runs as a separate system
user that alone can read the gateway home (data, state database, keys, settings). Other users must
still be able to execute the Python interpreter that runs their servers, which a venv whose
interpreter lives under root's private home does not allow: ``shared_interpreter`` then builds a
small venv from the system's ``python3`` that reuses this environment's packages.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

from sandbox.errors import InvalidRequest

GATEWAY_USER = "sandbox-gw"
OVERLAY_FILE = "sandbox_environment.pth"


def is_root() -> bool:
    """Whether this process runs as root (needed for per-user servers)."""
    return os.geteuid() == 0


def unix_user_exists(name: str) -> bool:
    """Whether the Unix account exists."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def ensure_unix_user(name: str, *, service: bool = False) -> bool:
    """Create the Unix account unless it exists (a login user with a private home, or a system
    user without home or shell); whether it was created."""
    if unix_user_exists(name):
        return False
    if service:
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]
    else:
        command = ["useradd", "--create-home", "-K", "HOME_MODE=0700", "--shell", "/bin/bash", name]
    subprocess.run(command, check=True, capture_output=True)
    return True


def remove_unix_user(name: str) -> None:
    """Delete the Unix account and its home (tests clean up their users)."""
    subprocess.run(["userdel", "--remove", name], check=False, capture_output=True)


def _others_can_reach(path: Path) -> bool:
    """Whether every folder above ``path`` lets other users through and ``path`` lets them read/run."""
    resolved = path.resolve()
    for folder in resolved.parents:
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(resolved).st_mode & stat.S_IROTH)


def shared_interpreter(folder: Path) -> Path:
    """A Python interpreter other users can run, with this environment's packages importable.

    This interpreter itself when it is reachable; otherwise a venv in ``folder`` built from the
    system's ``python3`` (same minor version) whose ``.pth`` adds this environment's site-packages.
    """
    own = Path(sys.executable)
    if _others_can_reach(own) and os.access(own.resolve(), os.X_OK):
        return own
    site_packages = Path(sysconfig.get_paths()["purelib"])
    if not _others_can_reach(site_packages):
        raise InvalidRequest(
            f"other users cannot read {site_packages}: install the project in a folder they can read",
            code="demo.environment_private",
        )
    python = folder / "bin" / "python"
    if not python.exists():
        system = shutil.which("python3", path="/usr/bin:/usr/local/bin:/bin")
        if system is None:
            raise InvalidRequest("no system python3 found for the per-user servers", code="demo.no_python")
        version = subprocess.run(
            [system, "-c", "import sys; print(sys.version_info[:2])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if version != str(tuple(sys.version_info[:2])):
            raise InvalidRequest(
                f"the system python3 is {version}, this environment {tuple(sys.version_info[:2])}: set "
                "SANDBOX_LOCAL_PYTHON to an interpreter all users can run that has sandbox[hub] installed",
                code="demo.python_mismatch",
            )
        subprocess.run([system, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    overlay = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (overlay / OVERLAY_FILE).write_text(f"import site; site.addsitedir({str(site_packages)!r})\n")
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    return python


def make_private(folder: Path, owner: str) -> None:
    """Give ``folder`` and everything in it to ``owner``; nobody else may enter it (0700/0600)."""
    account = pwd.getpwnam(owner)
    for root, dirs, files in os.walk(folder):
        os.chown(root, account.pw_uid, account.pw_gid)
        os.chmod(root, 0o700)
        for name in dirs + files:
            path = Path(root) / name
            os.chown(path, account.pw_uid, account.pw_gid, follow_symlinks=False)
            if name in files and not path.is_symlink():
                path.chmod(0o600)


def give_to(path: Path, owner: str) -> None:
    """Make ``path`` (a file or folder tree) belong to the Unix user ``owner``."""
    account = pwd.getpwnam(owner)
    for item in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.chown(item, account.pw_uid, account.pw_gid, follow_symlinks=False)


def home_of(name: str) -> Path:
    """The home folder of a Unix user."""
    return Path(pwd.getpwnam(name).pw_dir)
