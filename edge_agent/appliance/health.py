"""/livez, /readyz and /healthz (IETF health-check draft shape); cheap: no inference inside a health call."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psutil
from aiohttp import web

from .. import __version__
from ..access import any_token_ok, deny, exposure_warning
from ..events.mqtt import mqtt_checks
from ..observability import OBSERVABILITY
from ..runtime import AGENT
from ..sources.cameras import CAMERAS, camera_checks
from .runtime import APPLIANCE

log = logging.getLogger(__name__)
HEALTH_JSON = "application/health+json"
# `warn` is for what an operator should act on, so it needs a sustained, sizeable sample: a cold frame,
# a scheduling hiccup on a busy box or a client that sends faster than told must not flip it.
MIN_JUDGED_FRAMES = 30  # in the last 10 s
LATENCY_WARN_FACTOR = 2.0  # p95 above twice streaming.target_latency_ms (adaptive FPS steers towards 1x)
OVERLOAD_WARN = 0.25  # more than a quarter of recent frames dropped because the engine was busy
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Check = dict[str, Any]


def authorized(request: web.Request, *, metrics: bool = False) -> bool:
    """Health endpoints (and /v1/info, /metrics) are open unless server.health_requires_token is set;
    /metrics also takes server.metrics_token, and needs it once that is set."""
    server = request.app[AGENT].config.server
    extra = server.metrics_token if metrics else None
    if not (server.health_requires_token or extra) or (server.auth_token is None and extra is None):
        return True
    return any_token_ok(request, server.auth_token, extra)


def guarded(handler: Handler, *, metrics: bool = False) -> Handler:
    """Wrap a handler with the optional token check (see `authorized`)."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        if not authorized(request, metrics=metrics):
            return deny(401, "missing or wrong bearer token")
        return await handler(request)

    return wrapper


def _reply(body: dict[str, Any], ok: bool) -> web.Response:
    return web.json_response(
        body, status=200 if ok else 503, content_type=HEALTH_JSON, headers={"Cache-Control": "no-store"}
    )


async def livez(request: web.Request) -> web.Response:
    """The event loop answers: nothing else is consulted."""
    return _reply({"status": "pass"}, True)


async def readyz(request: web.Request) -> web.Response:
    """200 when the model is loaded and inference completed recently; 503 otherwise (or while stopping)."""
    app = request.app
    if app[APPLIANCE].lifecycle.stopping.is_set():
        return _reply({"status": "fail", "output": "stopping"}, False)
    monitor = app[APPLIANCE].monitor
    if not monitor.healthy():
        age = monitor.age()
        output = "no engine" if age is None else f"no inference completed for {age:.1f}s"
        return _reply({"status": "fail", "output": output}, False)
    return _reply({"status": "pass"}, True)


def _check(status: str, value: Any, unit: str | None = None, **extra: Any) -> list[Check]:
    entry: Check = {"status": status, "observedValue": value, "time": _now()}
    if unit:
        entry["observedUnit"] = unit
    entry.update({k: v for k, v in extra.items() if v is not None})
    return [entry]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def engine_checks(app: web.Application) -> dict[str, list[Check]]:
    """Inference age and latency, device choice and model identity."""
    cfg = app[AGENT].config
    monitor = app[APPLIANCE].monitor
    age = monitor.age()
    if app[AGENT].engine_or_none is None or age is None or app[AGENT].engine.device is None:
        return {"inference:age": _check("fail", None, "s", output="engine not started")}
    engine = app[AGENT].engine
    healthy = monitor.healthy()
    stats = app[OBSERVABILITY].stats
    frames = stats.processed_recent()
    p50, p95 = stats.latency_ms(50), stats.latency_ms(95)
    limit_ms = LATENCY_WARN_FACTOR * cfg.streaming.target_latency_ms
    slow = frames >= MIN_JUDGED_FRAMES and p95 is not None and p95 > limit_ms
    dev, model = engine.device, engine.model
    assert dev is not None  # checked above
    return {
        "inference:age": _check(
            "pass" if healthy else "fail",
            round(age, 3),
            "s",
            componentType="component",
            limit=cfg.systemd.max_inference_age,
            inFlight=engine.in_flight,
            probes=monitor.probes,
            output=None
            if healthy
            else f"no inference completed for {age:.1f}s"
            + (f" ({monitor.last_error})" if monitor.last_error else ""),
        ),
        "inference:latency": _check(
            "warn" if slow else "pass",
            None if p95 is None else round(p95, 2),
            "ms",
            componentType="component",
            p50=None if p50 is None else round(p50, 2),
            frames=frames,
            target=cfg.streaming.target_latency_ms,
            warnAbove=limit_ms,
            output=f"p95 {p95:.0f} ms over twice the target of {cfg.streaming.target_latency_ms:.0f} ms"
            if slow and p95
            else None,
        ),
        "device:executing": _check(
            "warn" if dev.fallback else "pass",
            ",".join(dev.executing),
            componentId=dev.selected,
            componentType="component",
            requested=dev.requested,
            selected=dev.selected,
            fallback=dev.fallback,
            reason=dev.reason,
            output=f"fell back to {dev.selected}: {dev.reason}" if dev.fallback else None,
        ),
        "model:labels": _check(
            "pass",
            len(model.labels),
            componentId=model.name,
            componentType="component",
            sha256=model.sha256,
            family=model.family,
            precision=model.precision,
            inputSize=list(model.input_size),
        ),
    }


def session_checks(app: web.Application) -> dict[str, list[Check]]:
    """Active sessions against the limit and the recent drop ratio (when the streaming API is mounted)."""
    stats = app[OBSERVABILITY].stats
    snap = stats.snapshot()
    overload, frames = stats.overload_ratio()
    dropping = frames >= MIN_JUDGED_FRAMES and overload > OVERLOAD_WARN
    return {
        "sessions:active": _check(
            "warn" if dropping else "pass",
            snap["active_sessions"],
            componentType="component",
            limit=snap["max_sessions"],
            fps=snap["total_fps"],
            dropRatio=snap["drop_ratio"],
            overloadRatio=round(overload, 4),
            output=f"{overload:.0%} of recent frames dropped: the engine cannot keep up"
            if dropping
            else None,
        ),
    }


def system_checks(app: web.Application) -> dict[str, list[Check]]:
    """CPU, memory, process RSS, load and uptime (psutil reads /proc: microseconds, no I/O wait)."""
    load1, load5, load15 = os.getloadavg()
    mem = psutil.virtual_memory()
    return {
        "cpu:utilization": _check(
            "pass", psutil.cpu_percent(interval=None), "percent", componentType="system"
        ),
        "memory:utilization": _check(
            "pass", mem.percent, "percent", componentType="system", availableBytes=mem.available
        ),
        "process:rss": _check("pass", psutil.Process().memory_info().rss, "bytes", componentType="system"),
        "system:load": _check(
            "pass",
            round(load1, 2),
            componentType="system",
            load5=round(load5, 2),
            load15=round(load15, 2),
            cpus=psutil.cpu_count(),
        ),
        "uptime": _check("pass", round(app[APPLIANCE].lifecycle.uptime(), 1), "s", componentType="system"),
    }


def exposure_checks(app: web.Application) -> dict[str, list[Check]]:
    """warn while the API is reachable from the network without a token."""
    server = app[AGENT].config.server
    problem = exposure_warning(server)
    return {
        "auth:token": _check(
            "warn" if problem else "pass",
            server.auth_token is not None,
            componentType="component",
            listen=server.host,
            output=problem,
        )
    }


def overall(checks: dict[str, list[Check]]) -> str:
    """fail if any check fails, else warn if any warns, else pass."""
    states = {entry["status"] for entries in checks.values() for entry in entries}
    return "fail" if "fail" in states else "warn" if "warn" in states else "pass"


def health_document(app: web.Application) -> dict[str, Any]:
    """The /healthz body."""
    checks = {
        **engine_checks(app),
        **session_checks(app),
        **system_checks(app),
        **exposure_checks(app),
        **mqtt_checks(app),
        **camera_checks(app[CAMERAS]),
    }
    status = overall(checks)
    if app[APPLIANCE].lifecycle.stopping.is_set():
        status = "fail"
    doc: dict[str, Any] = {
        "status": status,
        "version": __version__,
        "releaseId": __version__,
        "serviceId": app[APPLIANCE].identity.device_id,
        "description": "Edge Agent hazard detection",
        "checks": checks,
    }
    life = app[APPLIANCE].lifecycle
    notes = [f"last reload failed: {life.last_reload_error}"] if life.last_reload_error else []
    notes += life.config_warnings
    if life.stopping.is_set():
        notes.append("stopping")
    if notes:
        doc["notes"] = notes
    return doc


async def healthz(request: web.Request) -> web.Response:
    """Detailed health for fleet tooling: 200 for pass/warn, 503 for fail."""
    doc = health_document(request.app)
    return _reply(doc, doc["status"] != "fail")


async def warn_exposure(app: web.Application) -> None:
    """on_startup: one clear log line when the API is open to the network without a token."""
    problem = exposure_warning(app[AGENT].config.server)
    if problem is not None:
        log.warning("%s", problem)


def add_health_routes(app: web.Application) -> None:
    """Register /livez, /readyz and /healthz, and the exposure warning at start-up."""
    app.on_startup.append(warn_exposure)
    app.router.add_get("/livez", guarded(livez))
    app.router.add_get("/readyz", guarded(readyz))
    app.router.add_get("/healthz", guarded(healthz))
