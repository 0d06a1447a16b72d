"""JupyterHub for Compose: the local deployment's users, groups and roles, with DockerSpawner.

The hub container mounts ``deploy/local/jupyterhub_config.py`` (as ``local_config.py``) and loads
it first, so groups and the scopes the gateway checks have one source; this file then replaces what
differs on Compose: the hub listens on the container's interfaces, users' servers are containers
of ``sandbox-singleuser`` on the internal ``sandbox-users`` network, the gateway is an external
service (two replicas behind the Compose service name) and every secret comes from a file.
"""

# ruff: noqa: F821 (``get_config`` and ``load_subconfig`` are injected by JupyterHub)

from __future__ import annotations

import os
from pathlib import Path

SECRETS = Path(os.environ.get("SANDBOX_COMPOSE_SECRETS_DIR", "/run/secrets"))
SERVICE = "sandbox-gateway"
GATEWAY_URL = os.environ["SANDBOX_COMPOSE_GATEWAY_URL"]
NETWORK = os.environ["SANDBOX_COMPOSE_USERS_NETWORK"]
IMAGE = os.environ["SANDBOX_COMPOSE_SINGLEUSER_IMAGE"]


def secret(name: str) -> str:
    """A Compose secret's value."""
    return (SECRETS / name).read_text(encoding="utf-8").strip()


os.environ.setdefault("SANDBOX_LOCAL_USER_PASSWORD", secret("hub_user_password"))
load_subconfig("/etc/jupyterhub/local_config.py")
c = get_config()

c.JupyterHub.bind_url = "http://0.0.0.0:8000"
c.JupyterHub.hub_bind_url = "http://0.0.0.0:8081"
c.JupyterHub.hub_connect_url = "http://hub:8081"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:8001"
c.JupyterHub.cookie_secret = bytes.fromhex(secret("jupyterhub_cookie_secret"))

c.JupyterHub.spawner_class = "docker"
c.DockerSpawner.image = IMAGE
c.DockerSpawner.network_name = NETWORK
c.DockerSpawner.use_internal_ip = True
c.DockerSpawner.remove = True
c.DockerSpawner.cmd = ["jupyterhub-singleuser"]
c.Spawner.args = []
c.DockerSpawner.notebook_dir = "/home/jovyan"
c.DockerSpawner.volumes = {"sandbox-user-{username}": "/home/jovyan"}
c.Spawner.environment = {"SANDBOX_GATEWAY_URL": f"http://hub:8000/services/{SERVICE}/"}

c.JupyterHub.services = [
    {
        "name": SERVICE,
        "url": GATEWAY_URL,
        "api_token": secret("sandbox_hub_api_token"),
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": [],
        "display": True,
    }
]
