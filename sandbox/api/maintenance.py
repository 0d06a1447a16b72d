"""Periodic control-plane upkeep while the gateway runs: expire policies past ``valid_until`` and
requests pending too long, and close the queries of replicas that died (as failed: the charge made
at admission is kept, never refunded). ``sandbox sweep`` runs the same round from the command line;
both are safe to run from several processes at once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sandbox.control import ControlPlane
from sandbox.settings import Settings

log = logging.getLogger(__name__)


def run_once(control: ControlPlane, settings: Settings) -> tuple[int, int]:
    """One round: (policies and requests expired, abandoned queries closed)."""
    expired = control.expire_policies() + control.expire_requests()
    settled = control.settle_abandoned(timedelta(seconds=settings.abandoned_reservation_s))
    return expired, settled


async def maintain(control: ControlPlane, settings: Settings) -> None:
    """Run ``run_once`` every ``maintenance_interval_s`` seconds until cancelled."""
    while True:
        await asyncio.sleep(settings.maintenance_interval_s)
        try:
            expired, settled = await asyncio.to_thread(run_once, control, settings)
        except Exception:  # a failed round is retried at the next interval
            log.exception("control-plane maintenance failed")
            continue
        if expired or settled:
            log.info(
                "maintenance: %d policies/requests expired, %d abandoned queries closed", expired, settled
            )
