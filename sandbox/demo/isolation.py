"""Unix-level isolation for the local hub when run as root (``SANDBOX_LOCAL_SPAWNER=system``).

Each hub user's server runs as a Unix user of the same name; the gateway runs as a separate system
user that alone can read the gateway home (data, state database, keys, settings). Other users must
still reach the gateway home and run the Python environment of their servers, which a checkout in a
private folder (a 0700 home, say) does not allow: ``demo_folder`` then moves the demo's state out
of the checkout, and ``shared_interpreter`` installs the runtime into a readable folder: a venv from
the system's ``python3`` holding a copy (hard links where possible) of this environment's packages,
the ``sandbox`` package and JupyterLab's data files.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path

import sandbox
from sandbox.errors import InvalidRequest

GATEWAY_USER = "sandbox-gw"
PRIVATE_CHECKOUT_DEMOS = Path("/var/lib/sandbox-demo")
RUNTIME_MARKER = "sandbox-runtime.json"
# the editable install's hooks point into the checkout, which the runtime must not need
EDITABLE_HOOKS = ("__editable__", "_sandbox", "sandbox-")
JUPYTER_DATA = (("share", "jupyter"), ("etc", "jupyter"))


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


def others_can_reach(path: Path) -> bool:
    """Whether every folder above ``path`` lets other users through and ``path`` lets them read/run."""
    resolved = path.resolve()
    for folder in resolved.parents:
        if not os.stat(folder).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(resolved).st_mode & stat.S_IROTH)


def demo_folder(requested: Path) -> Path:
    """``requested`` when other users can reach it, else a folder for it under /var/lib/sandbox-demo.

    The gateway's user must reach the gateway home and every user the runtime; neither can pass a
    private folder above the checkout, and changing that folder's mode is not the demo's business.
    """
    requested.mkdir(parents=True, exist_ok=True)
    if all(os.stat(folder).st_mode & stat.S_IXOTH for folder in requested.resolve().parents):
        return requested
    digest = hashlib.sha256(str(requested.resolve()).encode()).hexdigest()[:10]
    PRIVATE_CHECKOUT_DEMOS.mkdir(mode=0o755, parents=True, exist_ok=True)
    return PRIVATE_CHECKOUT_DEMOS / f"{requested.resolve().parent.name}-{digest}"


def shared_interpreter(folder: Path) -> Path:
    """A Python interpreter other users can run, with this environment's packages importable.

    This interpreter itself when it, its packages and the ``sandbox`` package are all reachable;
    otherwise a venv in ``folder`` (which must be reachable) built from the system's ``python3`` of
    the same minor version, holding a copy of this environment (rebuilt when it changed).
    """
    own = Path(sys.executable)
    site_packages = Path(sysconfig.get_paths()["purelib"])
    package = Path(sandbox.__file__).parent
    if all(others_can_reach(p) for p in (own, site_packages, package)) and os.access(own.resolve(), os.X_OK):
        return own
    python = _system_venv(folder)
    target = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    stamp = {"site_packages": str(site_packages), "mtime_ns": site_packages.stat().st_mtime_ns}
    marker = folder / RUNTIME_MARKER
    if not marker.exists() or json.loads(marker.read_text(encoding="utf-8")) != stamp:
        shutil.rmtree(target)
        _copy_tree(site_packages, target, skip=EDITABLE_HOOKS)
        for parts in JUPYTER_DATA:
            shutil.rmtree(folder.joinpath(*parts), ignore_errors=True)
            if Path(sys.prefix).joinpath(*parts).is_dir():
                _copy_tree(Path(sys.prefix).joinpath(*parts), folder.joinpath(*parts))
        marker.write_text(json.dumps(stamp), encoding="utf-8")
    shutil.rmtree(target / "sandbox", ignore_errors=True)  # the code changes more often than the packages
    _copy_tree(package, target / "sandbox")
    folder.chmod(0o755)
    return python


def _system_venv(folder: Path) -> Path:
    """A venv without pip in ``folder`` from the system's ``python3`` (same minor version as this one)."""
    python = folder / "bin" / "python"
    if python.exists():
        return python
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
    return python


def _copy_tree(source: Path, target: Path, skip: tuple[str, ...] = ()) -> None:
    """Copy ``source`` to ``target``, readable by everyone: hard links for files others may already
    read (same file system), copies made world-readable otherwise; top-level names starting with
    ``skip`` left out."""
    for root, dirs, files in os.walk(source):
        top = Path(root) == source
        dirs[:] = [d for d in dirs if not (top and d.startswith(skip))]
        here = target / Path(root).relative_to(source)
        here.mkdir(parents=True, exist_ok=True)
        here.chmod(0o755)
        for name in files:
            if top and name.startswith(skip):
                continue
            origin, copy = Path(root) / name, here / name
            if copy.is_symlink() or copy.exists():
                copy.unlink()
            if origin.is_symlink():
                copy.symlink_to(os.readlink(origin))
                continue
            mode = origin.stat().st_mode
            try:
                if not mode & stat.S_IROTH:
                    raise OSError("not readable by others: copy instead")
                os.link(origin, copy)
            except OSError:
                shutil.copyfile(origin, copy)
                copy.chmod(0o755 if mode & stat.S_IXUSR else 0o644)


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
