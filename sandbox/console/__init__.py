"""The web console for data owners, operators and analysts, served by the gateway at ``/console``.

Server-rendered pages (Jinja2) in Chinese and English over the same control plane and HTTP API
handlers as ``/api/v1`` (see ``backend``); no JavaScript is needed, every asset is served by the
gateway. ``mount_console`` adds it (and CDN-free ``/docs`` and ``/redoc``) to the gateway app.
"""

from sandbox.console.app import mount_console

__all__ = ["mount_console"]
