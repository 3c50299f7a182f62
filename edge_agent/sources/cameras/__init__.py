"""Cameras the box pulls frames from itself: RTSP, MJPEG/HTTP, V4L2 devices and looping files.

`setup_cameras(app)` adds the manager (started after the engine, stopped before the scheduler drains), the
routes, and the per-camera metrics; `async_reload_cameras(app)` applies a reloaded config.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ...events import EVENTS
from ...observability import OBSERVABILITY
from ...runtime import AGENT
from ..base import Services
from ..registry import SOURCES
from .manager import CAMERAS, CameraManager
from .routes import CameraCollector, camera_checks, cameras_handler, snapshot_handler

__all__ = ["CAMERAS", "CameraManager", "async_reload_cameras", "camera_checks", "setup_cameras"]


async def cameras_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start the configured cameras once the engine runs; stop them all on shutdown."""
    agent = app[AGENT]
    await app[CAMERAS].async_apply(agent.config, agent.engine.model.labels)
    yield
    await app[CAMERAS].async_stop_all()  # already done by on_shutdown when the server ran


async def _stop_cameras(app: web.Application) -> None:
    """on_shutdown, first: cameras end (hazards `ended`, session `disconnected`) while SSE still streams."""
    await app[CAMERAS].async_stop_all()


async def async_reload_cameras(app: web.Application) -> None:
    """A reload was accepted: add, remove and restart changed cameras (others keep streaming)."""
    agent = app[AGENT]
    await app[CAMERAS].async_apply(agent.config, agent.engine.model.labels)


def setup_cameras(app: web.Application) -> None:
    """Create the manager; add /v1/cameras, the snapshot route and the per-camera metrics."""
    sources, obs = app[SOURCES], app[OBSERVABILITY]
    manager = CameraManager(Services(sources.scheduler, app[EVENTS], obs), sources.registry)
    app[CAMERAS] = manager
    obs.metrics.registry.register(CameraCollector(manager))
    app.router.add_get("/v1/cameras", cameras_handler)
    app.router.add_get("/v1/cameras/{camera_id}/snapshot.jpg", snapshot_handler)
    app.cleanup_ctx.append(cameras_ctx)
    app.on_shutdown.insert(0, _stop_cameras)
