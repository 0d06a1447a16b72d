"""Helpers of the workspace tests: a gateway in a thread, and code run in a kernel of a hub user's server."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websocket

from sandbox.client import Client
from sandbox.demo import isolation
from sandbox.demo.hub import HubProcess

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
SHARED_METADATA = REPO / "deploy" / "datasets" / "shared"
PASSWORD = "workspace-test-password"
SYSTEM = isolation.is_root() and os.environ.get("SANDBOX_TEST_HUB_SPAWNER", "system") == "system"
GATEWAY_SCOPE = "access:services!service=sandbox-gateway"


@dataclass
class Gateway:
    """A running gateway in token mode, with one API token per demo user."""

    url: str
    home: Path
    tokens: dict[str, str] = field(default_factory=dict)


@dataclass
class Hub:
    """The running hub, its gateway home and the test's users."""

    process: HubProcess
    home: Path
    admin: httpx.Client
    analyst: str
    outsider: str
    gateway_user: str | None

    def token(self, user: str, scopes: list[str] | None = None) -> str:
        """A fresh hub API token of ``user`` (minted by the provisioner service)."""
        body: dict[str, object] = {"expires_in": 900, "note": "workspace test"}
        if scopes is not None:
            body["scopes"] = scopes
        response = self.admin.post(f"/users/{user}/tokens", json=body)
        response.raise_for_status()
        token: str = response.json()["token"]
        return token

    def client(self, user: str) -> Client:
        """A client calling the gateway through the proxy with ``user``'s hub token."""
        return Client(self.process.gateway_url, self.token(user, [GATEWAY_SCOPE]))


def run_in_user_kernel(
    public_url: str, user: str, token: str, code: str, timeout: float = 180.0
) -> dict[str, Any]:
    """Run ``code`` in a new kernel of ``user``'s single-user server (REST + kernel websocket);
    its stdout, stderr and error (``ename: evalue``)."""
    base = f"{public_url}/user/{user}"
    headers = {"Authorization": f"token {token}"}
    response = httpx.post(f"{base}/api/kernels", headers=headers, json={"name": "python3"}, timeout=60)
    response.raise_for_status()
    kernel = response.json()["id"]
    socket = websocket.create_connection(
        base.replace("http", "ws", 1) + f"/api/kernels/{kernel}/channels",
        header=[f"Authorization: token {token}"],
        timeout=timeout,
    )
    msg_id = uuid.uuid4().hex
    socket.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "username": user,
                    "session": uuid.uuid4().hex,
                    "msg_type": "execute_request",
                    "version": "5.3",
                    "date": "",
                },
                "parent_header": {},
                "metadata": {},
                "channel": "shell",
                "buffers": [],
                "content": {
                    "code": code,
                    "silent": False,
                    "store_history": False,
                    "user_expressions": {},
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            }
        )
    )
    out: dict[str, Any] = {"stdout": "", "stderr": "", "error": None}
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = json.loads(socket.recv())
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                out[content["name"]] += content["text"]
            elif kind == "error":
                out["error"] = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                break
    finally:
        socket.close()
        httpx.delete(f"{base}/api/kernels/{kernel}", headers=headers, timeout=60)
    return out


def last_json_line(text: str) -> Any:
    """The last line of ``text`` parsed as JSON (kernel code prints its findings that way)."""
    return json.loads(text.strip().splitlines()[-1])
