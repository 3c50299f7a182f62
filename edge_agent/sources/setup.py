"""Wires the sources into an app: scheduler, registry, routes, and one cleanup context."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..events import EVENTS
from ..observability import OBSERVABILITY
from ..runtime import AGENT
from .cameras import setup_cameras
from .http import detect_handler
from .registry import SOURCES, SessionRegistry, Sources
from .reservoir import reservoir_ctx
from .scheduler import Scheduler
from .websocket.handler import stream_handler


async def _close_streams(app: web.Application) -> None:
    """on_shutdown: before aiohttp waits for handlers, end every WebSocket (1001) and SSE stream."""
    await app[SOURCES].registry.async_close_all()


async def sources_ctx(app: web.Application) -> AsyncIterator[None]:
    """Nothing to start (state is built in setup); on cleanup close streams and drain scheduled frames."""
    yield
    await app[SOURCES].registry.async_close_all()
    await app[SOURCES].scheduler.async_drain(app[AGENT].config.server.shutdown_timeout)


def setup_sources(app: web.Application) -> None:
    """Create the scheduler and registry; add the WebSocket and /v1/detect routes."""
    agent, obs = app[AGENT], app[OBSERVABILITY]
    registry = SessionRegistry(
        agent.config.streaming.max_sessions, app[EVENTS], obs.metrics, obs.stats, agent.memory
    )
    app[SOURCES] = Sources(Scheduler(lambda: agent.engine), registry)
    app.router.add_get("/stream/detection", stream_handler)
    app.router.add_post("/v1/detect", detect_handler)
    app.on_shutdown.append(_close_streams)
    app.cleanup_ctx.append(sources_ctx)
    app.cleanup_ctx.append(reservoir_ctx)
    setup_cameras(app)  # after sources_ctx: cameras stop before the scheduler drains
