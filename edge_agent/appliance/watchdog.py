"""systemd watchdog: WATCHDOG=1 while the loop and inference are both alive; WATCHDOG=trigger once stalled."""

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
# The stall decision is checked this often, whatever WatchdogSec is, so systemd hears of it within a second.
MAX_CHECK_INTERVAL_S = 1.0


async def run_watchdog(app: web.Application, period: float) -> None:
    """Check every second (at most period/2) and ping while healthy; once inference is stalled, ask systemd
    to act now (WATCHDOG=trigger) instead of letting the period run out. A blocked loop pings nobody."""
    interval = min(period / 2, MAX_CHECK_INTERVAL_S)
    notifier, monitor = app[APPLIANCE].notifier, app[APPLIANCE].monitor
    withheld = False
    next_at = time.monotonic() + interval
    notifier.watchdog()
    while True:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        lag = time.monotonic() - next_at
        next_at = time.monotonic() + interval
        if lag > period / 4:
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
            log.error("watchdog: %s; asking systemd to restart the service now (WATCHDOG=trigger)", reason)
            notifier.status(f"unhealthy: {reason}; watchdog pings stopped")
            notifier.watchdog_trigger()


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
