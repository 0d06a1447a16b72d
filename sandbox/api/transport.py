"""The gateway's HTTP protocol for uvicorn: httptools (C parser) with ``TCP_NODELAY`` on every
connection.

With ``--workers`` > 1, uvicorn binds the listening socket itself as ``socket(AF_INET)`` (protocol
0), and asyncio only disables Nagle's algorithm on sockets whose protocol is ``IPPROTO_TCP``;
small responses then wait for the client's delayed ACK (about 40 ms per request on Linux).
Setting ``TCP_NODELAY`` when a connection is made removes that stall in every mode.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _no_delay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools (C parser) protocol, disabling Nagle's algorithm on the connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Set ``TCP_NODELAY`` on TCP connections, then proceed as httptools does."""
        _no_delay(transport)
        super().connection_made(transport)
