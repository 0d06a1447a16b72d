"""Serving under a JupyterHub service prefix.

configurable-http-proxy forwards ``/services/<name>/...`` without stripping the prefix. For
requests under the prefix this middleware sets the ASGI ``root_path``, which Starlette's routing
strips; requests without the prefix (direct to the gateway) are routed unchanged.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class ServicePrefix:
    """ASGI middleware answering under ``prefix`` as well as at the root."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.prefix:
            path: str = scope["path"]
            if path == self.prefix or path.startswith(self.prefix + "/"):
                scope = {**scope, "root_path": scope.get("root_path", "") + self.prefix}
        await self.app(scope, receive, send)
