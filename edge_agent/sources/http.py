"""POST /v1/detect: one JPEG in the body, detections JSON out; a source of one frame, scheduled like the others."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from ..access import access_problem, answer_and_close, deny
from ..errors import EdgeAgentError, EngineNotRunning, FrameError, FrameTooLarge, InferenceTimeout
from ..inference.contract import DetectParams, Dropped, JpegFrame, Result
from ..inference.frames import check_jpeg
from ..observability import OBSERVABILITY
from ..runtime import AGENT
from .hazards import describe, engine_params, judged_and_shown, reindex, triggered_rules
from .registry import SOURCES
from .replies import BadMessage, detections_reply, resolve_classes
from .scheduler import Job

JPEG_TYPES = {"image/jpeg", "image/jpg", "application/octet-stream"}


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def _status_for(exc: EdgeAgentError) -> int:
    if isinstance(exc, FrameTooLarge):
        return 413
    if isinstance(exc, SlowBody):
        return 408
    if isinstance(exc, (FrameError, BadMessage)):
        return 400
    if isinstance(exc, (EngineNotRunning, InferenceTimeout)):
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
        names = [c.strip() for c in raw.split(",") if c.strip()]
        # isdigit() alone accepts '²', which int() refuses.
        items: list[str | int] = [int(c) if c.isascii() and c.isdigit() else c for c in names]
        classes = resolve_classes(items, labels)
    return DetectParams(_float_param(request, "confidence"), _float_param(request, "iou"), classes)


class SlowBody(BadMessage):
    """The request body did not arrive within server.body_timeout."""

    code = "body_timeout"


async def _read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise FrameTooLarge(f"body is larger than the limit of {limit} bytes") from None
    except TimeoutError:
        raise SlowBody(f"request body not received within {timeout:g} s") from None


async def detect_handler(request: web.Request) -> web.StreamResponse:
    """One JPEG in the body, detections JSON out; shares the infer requests fairly with streams."""
    app = request.app
    cfg = app[AGENT].config
    problem = access_problem(request, cfg.server)
    if problem is not None:
        return deny(*problem)
    if request.content_type not in JPEG_TYPES:
        return _error(
            415, "unsupported_media_type", f"send the JPEG as image/jpeg, not {request.content_type}"
        )
    obs = app[OBSERVABILITY]
    stats = app[SOURCES].http_stats
    try:
        params = _params(request, app[AGENT].engine.model.labels)
        body = await _read_body(request, cfg.engine.max_frame_bytes, cfg.server.body_timeout)
        arrived = time.perf_counter()
        obs.received(stats)
        width, height = check_jpeg(body, cfg.engine.max_frame_bytes, cfg.engine.max_frame_pixels)
        run = engine_params(params.confidence, params.iou, cfg.detection.confidence)
        result = await _run(app, Job(object(), JpegFrame(body, width, height), run, _future(), arrived))
    except EdgeAgentError as exc:
        obs.record(stats, exc)
        resp = _error(_status_for(exc), exc.code, str(exc))
        if isinstance(exc, SlowBody):
            await answer_and_close(request, resp)
        return resp
    obs.record(stats, result)
    judged, shown = judged_and_shown(
        result.detections, params.confidence, params.classes, cfg.detection.confidence
    )
    hazards = [
        describe(r, hits, judged) for r, hits in triggered_rules(cfg.hazards, judged, result.image_size)
    ]
    reindex(hazards, judged, shown)
    return web.json_response(detections_reply(None, time.time(), result, hazards, shown))


def _future() -> asyncio.Future[Result | Dropped]:
    return asyncio.get_running_loop().create_future()


async def _run(app: web.Application, job: Job) -> Result:
    app[SOURCES].scheduler.submit(job, 1)  # its own owner: never displaced, served in turn
    # No longer than an inference may take before the watchdog calls the engine stalled (then 503).
    limit = app[AGENT].config.systemd.max_inference_age
    try:
        outcome = await asyncio.wait_for(job.outcome, limit)  # a timeout cancels the job: it is given up
    except TimeoutError:
        raise InferenceTimeout(f"no result within {limit:g} s (systemd.max_inference_age)") from None
    if isinstance(outcome, Dropped):
        raise EngineNotRunning(f"frame not processed ({outcome.reason})")
    return outcome
