"""Notification webhooks: a running gateway POSTs an organisation's new notifications once each."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from console_support import build_world
from live_gateway import running_gateway

from sandbox.catalog.registry import Catalog
from sandbox.control import ControlPlane


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """An HTTP server on 127.0.0.1 recording the JSON bodies POSTed to it."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()


def test_a_pending_request_reaches_the_owners_webhook_once(
    tmp_path: Path, shared_data: Path, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    world = build_world(tmp_path / "home", shared_data)
    settings = world.settings.model_copy(
        update={"notification_webhooks": {"census-bureau": url}, "maintenance_interval_s": 0.2}
    )
    with ControlPlane(settings) as control:
        control.request_access(
            control.get_principal("alice"),
            Catalog(settings.home_dir).get("pums"),
            purpose="webhook test",
            columns=["age"],
            epsilon=1.0,
            delta=0.0,
            valid_until=datetime.now(UTC) + timedelta(days=30),
        )
    with running_gateway(settings):
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # several more rounds: nothing is delivered twice
    assert len(received) == 1
    note = received[0]
    assert note["organisation"] == "census-bureau" and note["kind"] == "pending"
    assert note["message"] == "acme asks for access to pums"
    assert note["message_zh"] == "acme 申请访问 pums"
    assert note["console_path"].startswith("/console/owner/requests/req_")
