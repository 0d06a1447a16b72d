"""Outgoing notification webhooks: each organisation's new notifications, POSTed as JSON.

``settings.notification_webhooks`` maps an organisation to a URL. Every ``maintenance_interval_s``
the gateway computes the organisation's notifications (as its owners and analysts see them in the
console) and POSTs each one it has not delivered before. Delivery is recorded by creating a marker
file exclusively under ``<home>/webhooks/``, so several gateway workers deliver each notification
once; a failed POST removes its marker and is retried at the next round.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import httpx

from sandbox.console.backend import Backend
from sandbox.console.i18n import translator
from sandbox.console.notifications import Notification, notifications
from sandbox.principals import Principal, Role
from sandbox.settings import Settings

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
MAX_PER_ROUND = 100


def payload(organisation: str, note: Notification) -> dict[str, Any]:
    """The JSON body of one notification (the message in English and Chinese)."""
    return {
        "organisation": organisation,
        "kind": note.kind,
        "time": note.time.isoformat(),
        "values": note.values,
        "message": translator("en").gettext(note.message, **note.values),
        "message_zh": translator("zh_CN").gettext(note.message, **note.values),
        "console_path": f"/console{note.link}",
    }


def _marker(folder: Path, body: dict[str, Any]) -> Path:
    key = json.dumps({k: body[k] for k in ("kind", "time", "values")}, sort_keys=True)
    return folder / hashlib.sha256(key.encode("utf-8")).hexdigest()


def deliver_once(backend: Backend, settings: Settings, client: httpx.Client) -> int:
    """POST every undelivered notification of every configured organisation; how many were sent."""
    sent = 0
    for organisation, url in settings.notification_webhooks.items():
        member = Principal(f"webhook:{organisation}", frozenset({Role.OWNER, Role.ANALYST}), organisation)
        folder = (
            settings.home_dir / "webhooks" / hashlib.sha256(organisation.encode("utf-8")).hexdigest()[:16]
        )
        folder.mkdir(parents=True, exist_ok=True)
        for note in notifications(backend, member)[:MAX_PER_ROUND]:
            body = payload(organisation, note)
            marker = _marker(folder, body)
            try:
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                continue  # delivered before (by this or another worker)
            try:
                client.post(url, json=body, timeout=TIMEOUT_S).raise_for_status()
            except httpx.HTTPError as error:
                marker.unlink(missing_ok=True)
                log.warning("notification webhook of %s failed (%s); retried next round", organisation, error)
                break
            sent += 1
    return sent


async def deliver_forever(backend: Backend, settings: Settings) -> None:
    """``deliver_once`` every ``maintenance_interval_s`` seconds until cancelled."""
    with httpx.Client() as client:
        while True:
            try:
                await asyncio.to_thread(deliver_once, backend, settings, client)
            except Exception:  # a failed round is retried at the next interval
                log.exception("notification webhooks failed")
            await asyncio.sleep(settings.maintenance_interval_s)
