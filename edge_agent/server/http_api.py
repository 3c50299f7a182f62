"""Plain HTTP: POST /v1/detect, GET /v1/info, GET /stream/performance."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil
from aiohttp import web

from .. import __version__
from ..errors import EdgeAgentError, EngineNotRunning, FrameError, FrameTooLarge
from ..frames import check_jpeg
from ..hazards import describe, triggered_rules
from ..types import DetectParams, Result
from .auth import access_problem, deny
from .keys import CONFIG_KEY, ENGINE_KEY, METRICS_KEY, SCHEDULER_KEY, SESSIONS_KEY, STATS_KEY
from .protocol import BadMessage, detections_reply, resolve_classes
from .scheduler import Dropped, Job
from .ws import device_json, model_json

JPEG_TYPES = {"image/jpeg", "image/jpg", "application/octet-stream"}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _status_for(exc: EdgeAgentError) -> int:
    if isinstance(exc, FrameTooLarge):
        return 413
    if isinstance(exc, (FrameError, BadMessage)):
        return 400
    if isinstance(exc, EngineNotRunning):
        return 503
    return 500


def _float_param(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadMessage(f"query '{name}' must be a number, got {raw!r}") from None
    if not 0.0 <= value <= 1.0:
        raise BadMessage(f"query '{name}' must be in [0, 1], got {value}")
    return value


def _params(request: web.Request, labels: tuple[str, ...]) -> DetectParams:
    raw = request.query.get("classes")
    classes = None
    if raw:
        items: list[str | int] = [
            int(c) if c.strip().isdigit() else c.strip() for c in raw.split(",") if c.strip()
        ]
        classes = resolve_classes(items, labels)
    return DetectParams(_float_param(request, "confidence"), _float_param(request, "iou"), classes)


async def _read_body(request: web.Request, limit: int) -> bytes:
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise FrameTooLarge(f"body is larger than the limit of {limit} bytes") from None


async def detect_handler(request: web.Request) -> web.Response:
    """One JPEG in the body, detections JSON out; shares the infer requests fairly with streams."""
    app = request.app
    cfg = app[CONFIG_KEY].value.config
    problem = access_problem(request, cfg.server)
    if problem is not None:
        return deny(*problem)
    if request.content_type not in JPEG_TYPES:
        return _error(
            415, "unsupported_media_type", f"send the JPEG as image/jpeg, not {request.content_type}"
        )
    engine = app[ENGINE_KEY].value
    metrics = app[METRICS_KEY]
    try:
        params = _params(request, engine.model.labels)
        body = await _read_body(request, cfg.engine.max_frame_bytes)
        metrics.count_received()
        check_jpeg(body, cfg.engine.max_frame_bytes, cfg.engine.max_frame_pixels)
        result = await _run(app, body, params)
    except EdgeAgentError as exc:
        metrics.observe_error(exc.code)
        return _error(_status_for(exc), exc.code, str(exc))
    metrics.observe_result(result.timings)
    app[STATS_KEY].record_result(result.timings)
    hazards = [
        describe(r, hits, result.detections)
        for r, hits in triggered_rules(cfg.hazards, result.detections, result.image_size)
    ]
    return web.json_response(detections_reply(None, time.time(), result, hazards))


async def _run(app: web.Application, body: bytes, params: DetectParams) -> Result:
    fut: asyncio.Future[Result | Dropped | EdgeAgentError] = asyncio.get_running_loop().create_future()
    job = Job(object(), body, params, fut)  # its own owner: never displaced, served in turn
    app[SCHEDULER_KEY].submit(job, 1)
    outcome = await fut
    if isinstance(outcome, EdgeAgentError):
        raise outcome
    if isinstance(outcome, Dropped):
        raise EngineNotRunning(f"frame not processed ({outcome.reason})")
    outcome.timings.queue += (job.dispatched - job.arrived) * 1e3
    outcome.timings.total += (job.dispatched - job.arrived) * 1e3
    return outcome


async def info_handler(request: web.Request) -> web.Response:
    """Version, model, device and limits."""
    app = request.app
    cfg = app[CONFIG_KEY].value.config
    engine = app[ENGINE_KEY].value
    s, e = cfg.streaming, cfg.engine
    return web.json_response(
        {
            "version": __version__,
            "protocol": 1,
            "model": model_json(engine),
            **device_json(engine),
            "num_requests": engine.num_requests,
            "auth": "token" if cfg.server.token else "none",
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
    return {
        "cpu_percent": psutil.cpu_percent(None),
        "memory_percent": mem.percent,
        "memory_used_mb": round(mem.used / 2**20, 1),
        "gpu": None,
    }


async def performance_handler(request: web.Request) -> web.Response:
    """The dashboard's figures: sessions, throughput, per-stage averages and bottlenecks, system."""
    app = request.app
    stats = app[STATS_KEY]
    stages = stats.stage_report()
    engine = app[ENGINE_KEY].value
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
            "sessions": [s.summary() for s in app[SESSIONS_KEY]],
            "system_resources": _system(),
        }
    )
