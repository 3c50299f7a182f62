"""The one-line STATUS= text systemctl shows, built from live state (ASCII, cheap)."""

from __future__ import annotations

from aiohttp import web

from ..server.keys import ENGINE_KEY, STATS_KEY
from .keys import LIFECYCLE_KEY, MONITOR_KEY


def status_line(app: web.Application) -> str:
    """'serving 3 sessions, 18.5 fps on GPU.0' / 'ready: idle on CPU' / 'unhealthy: ...' / 'stopping: ...'."""
    if app[LIFECYCLE_KEY].stopping.is_set():
        return "stopping: draining sessions and inference"
    if ENGINE_KEY not in app:
        return "starting: loading model"
    monitor = app[MONITOR_KEY]
    if not monitor.healthy():
        age = monitor.age()
        return f"unhealthy: no inference completed for {age or 0:.0f}s; watchdog pings stopped"
    engine = app[ENGINE_KEY].value
    where = ",".join(engine.device.executing) if engine.device else "?"
    prefix = f"degraded ({engine.device.reason}): " if engine.device and engine.device.fallback else ""
    stats = app.get(STATS_KEY, None)
    if stats is None or stats.active_sessions == 0:
        return f"{prefix}ready: idle, model {engine.model.name} on {where}"
    word = "session" if stats.active_sessions == 1 else "sessions"
    return f"{prefix}serving {stats.active_sessions} {word}, {stats.total_fps():.1f} fps on {where}"
