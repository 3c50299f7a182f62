"""Inference liveness: probe the engine when idle; report the age of the last completed inference."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from ..errors import EdgeAgentError
from ..runtime import AGENT
from .runtime import APPLIANCE
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)


class InferenceMonitor:
    """Keeps `engine.last_success` fresh with probe inferences while idle; never more than one probe at once."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._since = time.monotonic()
        self._probe: asyncio.Task[None] | None = None
        self._probed: object = None  # the engine the outstanding probe runs on
        self.probes = 0
        self.last_error: str | None = None

    def age(self) -> float | None:
        """Seconds since the engine last completed an inference (None before an engine exists)."""
        if self._app[AGENT].engine_or_none is None:
            return None
        last = self._app[AGENT].engine.last_success
        return time.monotonic() - (last if last is not None else self._since)

    def healthy(self) -> bool:
        """An engine exists and completed an inference within systemd.max_inference_age."""
        age = self.age()
        return age is not None and age <= self._app[AGENT].config.systemd.max_inference_age

    def probe_stuck(self) -> bool:
        """A probe started and has not come back."""
        return self._probe is not None and not self._probe.done()

    async def _run_probe(self) -> None:
        try:
            await self._app[AGENT].engine.async_probe()  # tick() just recorded this engine
            self.last_error = None
        except EdgeAgentError as exc:
            self.last_error = str(exc)
            log.warning("watchdog probe inference failed: %s", exc)

    def tick(self) -> None:
        """Start a probe when the engine has been idle for systemd.watchdog_probe_interval."""
        age = self.age()
        if age is None:
            return
        engine = self._app[AGENT].engine
        if self.probe_stuck():
            if self._probed is engine:
                return
            assert self._probe is not None
            self._probe.cancel()  # stuck on an engine a reload retired: probe the new one
        cfg = self._app[AGENT].config.systemd
        if age >= min(cfg.watchdog_probe_interval, cfg.max_inference_age / 2):
            self.probes += 1
            self._probed = engine
            self._probe = asyncio.create_task(self._run_probe(), name="inference-probe")

    async def run(self) -> None:
        """Tick a few times per probe interval for the app's lifetime."""
        while True:
            interval = self._app[AGENT].config.systemd.watchdog_probe_interval
            await asyncio.sleep(min(1.0, interval / 4))
            self.tick()

    async def cancel(self) -> None:
        """Stop a probe that is still outstanding (a stalled one never returns)."""
        await cancel_and_wait(self._probe)


async def monitor_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the inference monitor while the app runs."""
    monitor = app[APPLIANCE].monitor
    task = asyncio.create_task(monitor.run(), name="inference-monitor")
    yield
    await cancel_and_wait(task)
    await monitor.cancel()
