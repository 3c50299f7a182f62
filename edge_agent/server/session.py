"""One WebSocket session: per-session settings, frame admission, and the in-order reply writer."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..config import Config
from ..errors import EdgeAgentError, FrameError
from ..frames import check_jpeg
from ..hazards import HazardEvent, HazardTracker
from ..stats import LatencyWindow
from ..types import DetectParams, Result
from .events import EventHub
from .fps import AdaptiveFps, FpsChange, RateLimiter
from .metrics import StreamMetrics
from .protocol import ConfigMsg, detections_reply, dropped_reply, error_reply, resolve_classes
from .scheduler import Dropped, Job, Outcome, Scheduler
from .stats import LiveStats

log = logging.getLogger(__name__)
MAX_UNANSWERED = 256  # a client that never reads replies stops being read from (TCP backpressure)


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # built once: json.dumps with options builds one per call


def dumps(obj: dict[str, Any]) -> str:
    """Compact JSON, as sent on the wire."""
    return _ENCODER.encode(obj)


def with_client(client_id: str, text: str) -> str:
    """Prefix a JSON object's text with the client id (SSE events of the all-clients stream need it)."""
    return f'{{"client_id":{json.dumps(client_id)},{text[1:]}' if text != "{}" else text


@dataclass(slots=True)
class _Slot:
    frame_id: int
    timestamp: float | None
    outcome: asyncio.Future[Outcome]
    job: Job | None


@dataclass(slots=True)
class Counters:
    """Per-session frame counts."""

    received: int = 0
    processed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Services:
    """The shared services a session reports to."""

    scheduler: Scheduler
    hub: EventHub
    metrics: StreamMetrics
    stats: LiveStats


class Session:
    """State of one connection; `async_run_writer` sends every frame's reply exactly once, in order."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        session_id: str,
        client_id: str,
        config: Config,
        labels: tuple[str, ...],
        services: Services,
    ) -> None:
        self.ws = ws
        self.id = session_id
        self.client_id = client_id
        self.labels = labels
        self.services = services
        self.counters = Counters()
        self.latency = LatencyWindow(256)  # this session's recent total latencies (fixed memory)
        self.params = DetectParams()
        self._cfg = config
        s = config.streaming
        now = time.monotonic()
        self.fps = AdaptiveFps(
            target_ms=s.target_latency_ms, floor=s.min_fps, ceiling=s.max_fps, start=s.default_fps
        )
        self.limiter = RateLimiter(self.fps.limit, now)
        self.hazards = HazardTracker(config.hazards)
        self.last_activity = now
        self._seq = 0
        self._outbox: asyncio.Queue[_Slot | None] = asyncio.Queue()
        self.room = asyncio.Event()
        self.room.set()

    @property
    def unanswered(self) -> int:
        """Frames received and not yet answered."""
        return self._outbox.qsize()

    def hello(self, engine_model: dict[str, Any], device: dict[str, Any]) -> dict[str, Any]:
        """The first message of a session."""
        return {
            "type": "session",
            "protocol": 1,
            "session_id": self.id,
            "client_id": self.client_id,
            "fps_limit": self.fps.limit,
            "max_fps": self._cfg.streaming.max_fps,
            "queue_size": self._cfg.streaming.queue_size,
            "model": engine_model,
            **device,
        }

    def frame(self, data: bytes, frame_id: int | None, timestamp: float | None) -> None:
        """Admit one frame: answer it now (bad input, rate) or queue it for inference."""
        now = time.monotonic()
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        job = None
        eng = self._cfg.engine
        try:
            check_jpeg(data, eng.max_frame_bytes, eng.max_frame_pixels)
        except FrameError as exc:
            fut.set_result(exc)
        else:
            if not self.limiter.allow(now):
                fut.set_result(Dropped("rate"))
            else:
                job = Job(self, data, self.params, fut, arrived=now)
                self.services.scheduler.submit(job, self._cfg.streaming.queue_size)
        self._enqueue(frame_id, timestamp, fut, job)

    def frame_error(self, frame_id: int | None, exc: EdgeAgentError) -> None:
        """A frame message that is unusable as such: answer it with an error, in order."""
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        fut.set_result(exc)
        self._enqueue(frame_id, None, fut, None)

    def _enqueue(
        self, frame_id: int | None, timestamp: float | None, fut: asyncio.Future[Outcome], job: Job | None
    ) -> None:
        self._seq += 1
        self.counters.received += 1
        self.services.metrics.count_received()
        self._outbox.put_nowait(_Slot(self._seq if frame_id is None else frame_id, timestamp, fut, job))
        if self._outbox.qsize() >= MAX_UNANSWERED:
            self.room.clear()

    def configure(self, msg: ConfigMsg) -> dict[str, Any]:
        """Apply a config message; return the effective settings (raises BadMessage, applying nothing)."""
        classes = self.params.classes
        if msg.classes is not None:
            classes = resolve_classes(msg.classes, self.labels)
        elif msg.clear_classes:
            classes = None
        conf = msg.confidence if msg.confidence is not None else self.params.confidence
        iou = msg.iou if msg.iou is not None else self.params.iou
        self.params = DetectParams(confidence=conf, iou=iou, classes=classes)
        if msg.fps_limit is not None:
            s = self._cfg.streaming
            self.fps.set_bounds(min(s.min_fps, msg.fps_limit), msg.fps_limit, msg.fps_limit)
            self.limiter.set_rate(self.fps.limit)
        return self.effective()

    def effective(self) -> dict[str, Any]:
        """The `config` reply: the settings now in force."""
        det = self._cfg.detection
        p = self.params
        return {
            "type": "config",
            "fps_limit": self.fps.limit,
            "confidence": det.confidence if p.confidence is None else p.confidence,
            "iou": det.iou if p.iou is None else p.iou,
            "classes": None if p.classes is None else [self.labels[i] for i in sorted(p.classes)],
        }

    async def send(self, obj: dict[str, Any]) -> None:
        """Send a control message now (not ordered with frame replies)."""
        if not self.ws.closed:
            await self.ws.send_str(dumps(obj))

    def close_outbox(self) -> None:
        """Tell the writer no more frames will come."""
        self._outbox.put_nowait(None)

    async def async_run_writer(self) -> None:
        """Await each frame's outcome in arrival order and send its reply."""
        while (slot := await self._outbox.get()) is not None:
            if self._outbox.qsize() <= MAX_UNANSWERED // 2:
                self.room.set()
            outcome = await slot.outcome
            if isinstance(outcome, Dropped) and outcome.reason == "closed":
                continue
            text, events = self._reply(slot, outcome)
            sent = await self._send_reply(text)
            change = self._account(outcome)  # after the send: bookkeeping is off the frame's latency
            if not sent:
                continue
            self._publish(text, events, change, isinstance(outcome, Result))
            if change is not None:
                await self.send({"type": "fps", "fps_limit": change.fps_limit, "reason": change.reason})

    async def _send_reply(self, text: str) -> bool:
        if self.ws.closed:
            return False
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return False  # the peer went away; keep draining so every slot is consumed
        return True

    def _reply(self, slot: _Slot, outcome: Outcome) -> tuple[str, list[HazardEvent]]:
        """The reply's text, and the hazard transitions it causes."""
        if isinstance(outcome, Result):
            t = outcome.timings
            if slot.job is not None and slot.job.dispatched:
                # Time waiting in the scheduler is queueing too.
                wait_ms = (slot.job.dispatched - slot.job.arrived) * 1e3
                t.queue += wait_ms
                t.total += wait_ms
            triggered, events = self.hazards.update(outcome.detections, outcome.image_size, slot.frame_id)
            return dumps(detections_reply(slot.frame_id, slot.timestamp, outcome, triggered)), events
        if isinstance(outcome, Dropped):
            return dumps(dropped_reply(slot.frame_id, outcome.reason)), []
        assert isinstance(outcome, EdgeAgentError)
        return dumps(error_reply(slot.frame_id, outcome)), []

    def _account(self, outcome: Outcome) -> FpsChange | None:
        """Count the outcome in the session, metrics and stats; feed adaptive FPS."""
        svc, c = self.services, self.counters
        if isinstance(outcome, Result):
            t = outcome.timings
            c.processed += 1
            self.latency.add(t.total)
            svc.metrics.observe_result(t)
            svc.stats.record_result(t)
            change = self.fps.observe(t.total, time.monotonic())
            if change is not None:
                self.limiter.set_rate(change.fps_limit)
            return change
        if isinstance(outcome, Dropped):
            c.dropped[outcome.reason] = c.dropped.get(outcome.reason, 0) + 1
            svc.metrics.observe_drop(outcome.reason)
            svc.stats.record_drop()
        else:
            c.errors[outcome.code] = c.errors.get(outcome.code, 0) + 1
            svc.metrics.observe_error(outcome.code)
            svc.stats.record_error()
        return None

    def _publish(
        self, text: str, events: list[HazardEvent], change: FpsChange | None, detections: bool
    ) -> None:
        hub = self.services.hub
        if detections:
            hub.publish(self.client_id, "detections", with_client(self.client_id, text))
        for ev in events:
            self.publish_hazard(ev)
        if change is not None:
            hub.publish(
                self.client_id,
                "fps",
                dumps(
                    {
                        "client_id": self.client_id,
                        "type": "fps",
                        "fps_limit": change.fps_limit,
                        "reason": change.reason,
                    }
                ),
            )

    def publish_hazard(self, ev: HazardEvent) -> None:
        """Emit one hazard transition on SSE."""
        self.services.hub.publish(
            self.client_id, "hazard", dumps({"client_id": self.client_id, **ev.to_json()})
        )

    def summary(self) -> dict[str, Any]:
        """Per-session figures for dashboards."""
        c = self.counters
        return {
            "session_id": self.id,
            "client_id": self.client_id,
            "fps_limit": self.fps.limit,
            "received": c.received,
            "processed": c.processed,
            "dropped": dict(c.dropped),
            "errors": dict(c.errors),
            "unanswered": self.unanswered,
            "latency_p50_ms": round(self.latency.percentile(50), 2) if self.latency.count else None,
            "latency_p95_ms": round(self.latency.percentile(95), 2) if self.latency.count else None,
        }
