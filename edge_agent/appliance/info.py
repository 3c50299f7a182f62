"""GET /v1/info (what this agent is and its limits) and GET /stream/performance (the dashboard's figures)."""

from __future__ import annotations

from typing import Any

import psutil
from aiohttp import web

from .. import __version__
from ..access import access_problem, deny
from ..observability import OBSERVABILITY
from ..runtime import AGENT
from ..sources.registry import SOURCES
from ..sources.replies import device_json, model_json
from .health import guarded


async def info_handler(request: web.Request) -> web.Response:
    """Version, model, device and limits."""
    agent = request.app[AGENT]
    cfg, engine = agent.config, agent.engine
    s, e = cfg.streaming, cfg.engine
    return web.json_response(
        {
            "version": __version__,
            "protocol": 1,
            "model": model_json(engine),
            **device_json(engine),
            "num_requests": engine.num_requests,
            "auth": "token" if cfg.server.auth_token else "none",
            "limits": {
                "max_frame_bytes": e.max_frame_bytes,
                "max_frame_pixels": e.max_frame_pixels,
                "max_text_bytes": s.max_text_bytes,
                "max_sessions": s.max_sessions,
                "max_fps": s.max_fps,
                "min_fps": s.min_fps,
                "default_fps": s.default_fps,
                "queue_size": s.queue_size,
                "session_timeout": s.session_timeout,
                "target_latency_ms": s.target_latency_ms,
            },
            "endpoints": {
                "ws": "/stream/detection",
                "sse": "/stream/events",
                "detect": "/v1/detect",
                "performance": "/stream/performance",
            },
        }
    )


def _system() -> dict[str, Any]:
    mem = psutil.virtual_memory()
    # cpu_percent(None) compares with the previous call: non-blocking.
    cpu = psutil.cpu_percent(None)
    return {
        "cpu_percent": cpu,
        "memory_percent": mem.percent,
        "memory_used_mb": round(mem.used / 2**20, 1),
        "gpu": None,
        # The seed guide's names for the same figures (percent); no GPU utilisation source exists yet.
        "cpu_usage": cpu,
        "memory_usage": mem.percent,
        "gpu_usage": None,
    }


async def performance_handler(request: web.Request) -> web.Response:
    """The dashboard's figures: sessions, throughput, per-stage averages and bottlenecks, system."""
    app = request.app
    problem = access_problem(request, app[AGENT].config.server)  # client ids and counters: token only
    if problem is not None:
        return deny(*problem)
    stats = app[OBSERVABILITY].stats
    stages = stats.stage_report()
    engine = app[AGENT].engine
    return web.json_response(
        {
            "active_sessions": stats.active_sessions,
            "total_throughput_fps": round(stats.total_fps(), 2),
            "avg_processing_time_ms": stages["averages_ms"]["total"],
            "stage_averages_ms": stages["averages_ms"],
            "bottlenecks": stages["bottlenecks"],
            "drop_ratio": round(stats.drop_ratio(), 4),
            "latency_p50_ms": stats.latency_ms(50),
            "latency_p95_ms": stats.latency_ms(95),
            "in_flight": engine.in_flight,
            "num_requests": engine.num_requests,
            "sessions": [s.summary() for s in app[SOURCES].registry],
            "system_resources": _system(),
        }
    )


def add_info_routes(app: web.Application) -> None:
    """Register /v1/info and /stream/performance."""
    app.router.add_get("/v1/info", guarded(info_handler))
    app.router.add_get("/stream/performance", performance_handler)
