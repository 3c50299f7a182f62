"""Wires the streaming API into an app: shared state under typed keys, routes, one cleanup context."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from .events import EventHub
from .http_api import detect_handler, info_handler, performance_handler
from .keys import CONFIG_KEY, ENGINE_KEY, EVENTS_KEY, METRICS_KEY, SCHEDULER_KEY, SESSIONS_KEY, STATS_KEY
from .metrics import StreamMetrics
from .registry import SessionRegistry
from .scheduler import Detect, Scheduler
from .sse import events_handler
from .stats import LiveStats
from .ws import stream_handler

log = logging.getLogger(__name__)


async def _close_streams(app: web.Application) -> None:
    """on_shutdown: before aiohttp waits for handlers, end every WebSocket (1001) and SSE stream."""
    await app[SESSIONS_KEY].async_close_all()


async def streaming_ctx(app: web.Application) -> AsyncIterator[None]:
    """Nothing to start (state is built in setup); on cleanup close streams and drain scheduled frames."""
    yield
    await app[SESSIONS_KEY].async_close_all()
    await app[SCHEDULER_KEY].async_drain(app[CONFIG_KEY].value.config.server.shutdown_timeout)


def setup_streaming(app: web.Application) -> None:
    """Create the metrics, live stats, event hub, scheduler and session registry; add the routes."""
    cfg = app[CONFIG_KEY].value.config
    s = cfg.streaming
    metrics = StreamMetrics()
    stats = LiveStats(s.max_sessions)
    hub = EventHub(s.event_buffer, s.subscriber_queue, max_clients=max(64, 4 * s.max_sessions))

    def detect() -> Detect:
        return app[ENGINE_KEY].value.detect  # looked up per frame: a reload swaps the engine

    def capacity() -> int:
        return app[ENGINE_KEY].value.num_requests

    app[METRICS_KEY] = metrics
    app[STATS_KEY] = stats
    app[EVENTS_KEY] = hub
    app[SCHEDULER_KEY] = Scheduler(detect, capacity)
    app[SESSIONS_KEY] = SessionRegistry(s.max_sessions, hub, metrics, stats)
    app.router.add_get("/stream/detection", stream_handler)
    app.router.add_get("/stream/events", events_handler)
    app.router.add_get("/stream/events/{client_id}", events_handler)
    app.router.add_get("/stream/performance", performance_handler)
    app.router.add_post("/v1/detect", detect_handler)
    app.router.add_get("/v1/info", info_handler)
    app.on_shutdown.append(_close_streams)
    app.cleanup_ctx.append(streaming_ctx)
