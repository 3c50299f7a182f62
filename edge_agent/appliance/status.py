"""The one-line STATUS= text systemctl shows, built from live state (ASCII, cheap)."""

from __future__ import annotations

from aiohttp import web

from ..observability import OBSERVABILITY
from ..runtime import AGENT
from .runtime import APPLIANCE


def status_line(app: web.Application) -> str:
    """'serving 3 sessions, 18.5 fps on GPU.0' / 'ready: idle on CPU' / 'unhealthy: ...' / 'stopping: ...'."""
    if app[APPLIANCE].lifecycle.stopping.is_set():
        return "stopping: draining sessions and inference"
    if app[AGENT].engine_or_none is None:
        return "starting: loading model"
    monitor = app[APPLIANCE].monitor
    if not monitor.healthy():
        age = monitor.age()
        return f"unhealthy: no inference completed for {age or 0:.0f}s; watchdog pings stopped"
    engine = app[AGENT].engine
    where = ",".join(engine.device.executing) if engine.device else "?"
    prefix = f"degraded ({engine.device.reason}): " if engine.device and engine.device.fallback else ""
    stats = app[OBSERVABILITY].stats
    if stats.active_sessions == 0:
        return f"{prefix}ready: idle, model {engine.model.name} on {where}"
    word = "session" if stats.active_sessions == 1 else "sessions"
    return f"{prefix}serving {stats.active_sessions} {word}, {stats.total_fps():.1f} fps on {where}"
