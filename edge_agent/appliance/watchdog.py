"""systemd watchdog: WATCHDOG=1 at half the period, only while the loop and inference are both alive."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from .notify import watchdog_period
from .runtime import APPLIANCE
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)


async def run_watchdog(app: web.Application, period: float) -> None:
    """Ping every period/2; a late wake-up means the loop was blocked, a stale inference means stop pinging."""
    interval = period / 2
    notifier, monitor = app[APPLIANCE].notifier, app[APPLIANCE].monitor
    withheld = False
    next_at = time.monotonic() + interval
    notifier.watchdog()
    while True:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        lag = time.monotonic() - next_at
        next_at = time.monotonic() + interval
        if lag > interval:
            log.warning("watchdog: event loop was blocked for %.1fs", lag)
        if monitor.healthy():
            if withheld:
                log.info("watchdog: inference recovered; pinging again")
            withheld = False
            notifier.watchdog()
        elif not withheld:
            withheld = True
            age = monitor.age()
            reason = f"no inference completed for {age:.0f}s" if age is not None else "no engine"
            log.error("watchdog: withholding pings (%s); systemd will restart the service", reason)
            notifier.status(f"unhealthy: {reason}; watchdog pings stopped")


async def watchdog_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the watchdog pinger when systemd set WATCHDOG_USEC for this process."""
    period = watchdog_period()
    if period is None or not app[APPLIANCE].notifier.enabled:
        yield
        return
    log.info("systemd watchdog enabled: period %.1fs, pinging every %.1fs", period, period / 2)
    task = asyncio.create_task(run_watchdog(app, period), name="systemd-watchdog")
    yield
    await cancel_and_wait(task)
