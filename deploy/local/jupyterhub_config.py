"""JupyterHub for one machine: the analyst workspace with the sandbox gateway as a hub-managed service.

    jupyterhub -f deploy/local/jupyterhub_config.py        (``python -m sandbox.demo`` does it for you)

Everything listens on 127.0.0.1. Paths and ports come from the environment so tests can pick free
ports (every knob is a ``SANDBOX_LOCAL_*`` variable, listed in ``docs/workspace.md``):

- users, their roles and organisations come from one directory file (JSON, written by the demo or a
  test) so the hub's groups agree with the gateway's user registry: an analyst of organisation
  ``acme`` is in group ``analysts-acme``, data owners in ``owners``, operators in ``operators``
  (the groups ``sandbox.auth.jupyterhub`` checks). Only members of those groups get a notebook
  token that may call the gateway (``access:services!service=sandbox-gateway``); the gateway then
  takes role and organisation from its own registry.
- the gateway is ``sandbox serve`` on ``SANDBOX_HOME`` in JupyterHub auth mode, started and stopped by
  the hub; it answers under the service prefix the hub gives it.
- ``SANDBOX_LOCAL_SPAWNER=system`` (hub run as root): every user's server runs as their own Unix
  user and the gateway as ``SANDBOX_LOCAL_GATEWAY_USER``, the only account that can read the
  gateway home (data, state database, keys). ``SANDBOX_LOCAL_PYTHON`` must then be an interpreter
  those users can execute (not one under a private home directory), in an environment that also
  holds JupyterLab's data files (``sandbox.demo.isolation.shared_interpreter`` builds one).
"""

# ruff: noqa: F821 (``get_config`` is injected by JupyterHub)

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
E = os.environ.get

STATE = Path(E("SANDBOX_LOCAL_STATE", str(REPO / ".demo" / "hub")))
GATEWAY_HOME = Path(E("SANDBOX_HOME", str(REPO / ".demo" / "home")))
DIRECTORY = Path(E("SANDBOX_LOCAL_DIRECTORY", str(REPO / ".demo" / "directory.json")))
HOMES = Path(E("SANDBOX_LOCAL_HOMES", str(REPO / ".demo" / "users")))
PUBLIC_PORT = int(E("SANDBOX_LOCAL_PORT", "8000"))
HUB_PORT = int(E("SANDBOX_LOCAL_HUB_PORT", "8081"))
PROXY_API_PORT = int(E("SANDBOX_LOCAL_PROXY_API_PORT", "8001"))
GATEWAY_PORT = int(E("SANDBOX_LOCAL_GATEWAY_PORT", "8100"))
SPAWNER = E("SANDBOX_LOCAL_SPAWNER", "simple")
PYTHON = E("SANDBOX_LOCAL_PYTHON", sys.executable)
RUNTIME_PREFIX = Path(PYTHON).parent.parent  # the servers' environment (a venv: <prefix>/bin/python)
GATEWAY_USER = E("SANDBOX_LOCAL_GATEWAY_USER", "")
PROVISIONER_TOKEN = E("SANDBOX_LOCAL_PROVISIONER_TOKEN", "")
SERVICE = "sandbox-gateway"
GATEWAY_ACCESS = f"access:services!service={SERVICE}"
HOST = "127.0.0.1"

STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
c = get_config()

# network: loopback only
c.JupyterHub.bind_url = f"http://{HOST}:{PUBLIC_PORT}"
c.JupyterHub.hub_bind_url = f"http://{HOST}:{HUB_PORT}"
c.ConfigurableHTTPProxy.api_url = f"http://{HOST}:{PROXY_API_PORT}"
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
chp = Path(sys.executable).parent / "configurable-http-proxy"
if chp.exists():
    c.ConfigurableHTTPProxy.command = [str(chp)]
c.Spawner.ip = HOST

# hub state (a private folder: sqlite database, cookie secret, pid files)
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.log_level = E("SANDBOX_LOCAL_LOG_LEVEL", "INFO")

# users, groups and roles, from the directory shared with the gateway's registry
directory = json.loads(DIRECTORY.read_text(encoding="utf-8")) if DIRECTORY.exists() else {"users": []}
groups: dict[str, dict[str, object]] = {}
for entry in directory["users"]:
    for role in entry["roles"]:
        if role == "analyst":
            name, props = (
                f"analysts-{entry['organisation']}",
                {"role": "analyst", "org": entry["organisation"]},
            )
        elif role == "owner":
            name, props = "owners", {"role": "owner"}
        else:
            name, props = "operators", {"role": "operator"}
        group = groups.setdefault(name, {"users": [], "properties": props})
        group["users"].append(entry["name"])
c.JupyterHub.load_groups = groups

c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = E("SANDBOX_LOCAL_USER_PASSWORD", "sandbox-demo")
if E("SANDBOX_LOCAL_ADMIN_PASSWORD"):
    c.SharedPasswordAuthenticator.admin_password = E("SANDBOX_LOCAL_ADMIN_PASSWORD")
    c.Authenticator.admin_users = {u["name"] for u in directory["users"] if "operator" in u["roles"]}
c.Authenticator.allowed_users = {u["name"] for u in directory["users"]} | set(directory.get("others", []))

by_role = {
    role: sorted(g for g, v in groups.items() if v["properties"]["role"] == role)
    for role in ("analyst", "owner", "operator")
}
c.JupyterHub.load_roles = [
    {"name": "sandbox-analyst", "scopes": ["self", GATEWAY_ACCESS], "groups": by_role["analyst"]},
    {"name": "sandbox-owner", "scopes": ["self", GATEWAY_ACCESS], "groups": by_role["owner"]},
    {  # operators run the hub (users' servers, the admin page) but cannot enter users' servers
        "name": "sandbox-operator",
        "scopes": ["self", GATEWAY_ACCESS, "admin-ui", "list:users", "read:users", "admin:servers"],
        "groups": by_role["operator"],
    },
    {  # the gateway's own token: identify callers and read their groups, nothing else
        "name": "sandbox-gateway",
        "scopes": ["read:users:name", "read:users:groups", "read:groups", "list:groups"],
        "services": [SERVICE],
    },
]

# single-user servers; the notebook token may call the gateway when its owner holds the scope
c.Spawner.cmd = [PYTHON, "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", GATEWAY_ACCESS]
c.Spawner.environment = {
    "SANDBOX_GATEWAY_URL": f"http://{HOST}:{PUBLIC_PORT}/services/{SERVICE}/",
    # JupyterLab and its extensions come from the servers' environment: its data files and its
    # server-extension switches
    "JUPYTER_PATH": str(RUNTIME_PREFIX / "share" / "jupyter"),
    "JUPYTER_CONFIG_PATH": str(RUNTIME_PREFIX / "etc" / "jupyter"),
}
if SPAWNER == "system":
    c.JupyterHub.spawner_class = "localprocess"
    c.LocalProcessSpawner.notebook_dir = "~"
else:
    c.JupyterHub.spawner_class = "simple"
    c.SimpleLocalProcessSpawner.home_dir_template = str(HOMES / "{username}")
    if os.getuid() == 0:
        c.Spawner.args = ["--allow-root"]

# the gateway, started and watched by the hub
gateway_environment = {
    "SANDBOX_HOME": str(GATEWAY_HOME),
    "SANDBOX_AUTH_MODE": "jupyterhub",
    "SANDBOX_HUB_API_URL": f"http://{HOST}:{HUB_PORT}/hub/api",
    "SANDBOX_HUB_SERVICE_NAME": SERVICE,
    "HOME": str(GATEWAY_HOME),
}
gateway = {
    "name": SERVICE,
    "url": f"http://{HOST}:{GATEWAY_PORT}",
    "command": [
        *(PYTHON, "-m", "sandbox.cli", "serve", "--host", HOST, "--port", str(GATEWAY_PORT)),
        *("--log-level", "warning"),
    ],
    "cwd": str(GATEWAY_HOME),
    "environment": gateway_environment,
    "oauth_no_confirm": True,
    # the console signs its users in through the hub (one login for hub and console)
    "oauth_redirect_uri": f"/services/{SERVICE}/console/oauth_callback",
    "oauth_client_allowed_scopes": [],
    "display": True,
}
if GATEWAY_USER:
    gateway["user"] = GATEWAY_USER
c.JupyterHub.services = [gateway]
if PROVISIONER_TOKEN:  # a token-only service for provisioning scripts and tests
    c.JupyterHub.services.append({"name": "provisioner", "api_token": PROVISIONER_TOKEN})
    c.JupyterHub.load_roles.append(
        {
            "name": "provisioner",
            "scopes": ["admin:users", "admin:servers", "admin:groups", "tokens", "list:users", "read:users"],
            "services": ["provisioner"],
        }
    )
