"""Run ``deploy/local/jupyterhub_config.py`` as a subprocess: start, wait until ready, stop cleanly.

The hub starts the proxy, the gateway service and single-user servers in their own sessions, so a
hard-killed hub would orphan them. ``HubProcess`` records every descendant PID while it runs and,
after the hub's own shutdown, terminates whatever of them is still alive.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import psutil

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "local" / "jupyterhub_config.py"
SERVICE = "sandbox-gateway"
STOP_SECONDS = 30.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class HubPorts:
    """The four loopback ports of one hub."""

    public: int
    hub: int
    proxy_api: int
    gateway: int

    @classmethod
    def free(cls) -> HubPorts:
        """Four currently free ports."""
        return cls(free_port(), free_port(), free_port(), free_port())

    def environment(self) -> dict[str, str]:
        """The ``SANDBOX_LOCAL_*`` variables the hub config reads."""
        return {
            "SANDBOX_LOCAL_PORT": str(self.public),
            "SANDBOX_LOCAL_HUB_PORT": str(self.hub),
            "SANDBOX_LOCAL_PROXY_API_PORT": str(self.proxy_api),
            "SANDBOX_LOCAL_GATEWAY_PORT": str(self.gateway),
        }


@dataclass
class HubProcess:
    """One JupyterHub subprocess and the processes it started."""

    ports: HubPorts
    environment: dict[str, str]
    log_path: Path
    config: Path = CONFIG
    process: subprocess.Popen[bytes] | None = None
    tracked: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def public_url(self) -> str:
        """The proxy's URL: what browsers and notebooks use."""
        return f"http://127.0.0.1:{self.ports.public}"

    @property
    def gateway_url(self) -> str:
        """The gateway through the proxy (the URL the spawner gives notebooks)."""
        return f"{self.public_url}/services/{SERVICE}/"

    def start(self) -> None:
        """Start ``jupyterhub -f deploy/local/jupyterhub_config.py`` with a private umask."""
        env = {**os.environ, **self.ports.environment(), **self.environment}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        state = Path(env["SANDBOX_LOCAL_STATE"])
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        log: IO[bytes] = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(self.config)],
                cwd=state,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=0o077,
            )
        finally:
            log.close()

    def wait_ready(self, timeout: float) -> float:
        """Wait until the hub API and the gateway answer through the proxy; the seconds it took."""
        started = time.monotonic()
        deadline = started + timeout
        for url in (f"{self.public_url}/hub/api/", f"{self.gateway_url}healthz"):
            self._wait_for(url, deadline)
        self.track()
        return time.monotonic() - started

    def _wait_for(self, url: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"JupyterHub exited; last log lines:\n{self.log_tail()}")
            try:
                if httpx.get(url, timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{url} did not answer in time; last log lines:\n{self.log_tail()}")

    def track(self) -> None:
        """Remember the hub's current descendants (proxy, gateway, servers, kernels)."""
        if self.process is None:
            return
        try:
            for child in psutil.Process(self.process.pid).children(recursive=True):
                self.tracked.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass

    def running(self) -> bool:
        """Whether the hub process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM the hub (it stops servers, the gateway and the proxy), then end any leftover;
        the number of leftovers that had to be ended."""
        self.track()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        leftovers: list[psutil.Process] = []
        for proc in self.tracked.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    leftovers += [proc, *proc.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
        for proc in leftovers:
            try:
                proc.terminate()
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(leftovers, timeout=5)
        for proc in alive:
            proc.kill()
        return len(leftovers)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the hub's log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
