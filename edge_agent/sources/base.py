"""The Source contract: what every frame source shares (settings, adaptive FPS, latest-wins admission,
hazard rules, in-order replies, one record per frame). A WebSocket session is one; cameras are another.

A subclass only says how a reply and a control message reach its peer (`async_deliver`, `async_control`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..config import Config
from ..errors import EdgeAgentError, FrameError
from ..events import DetectionsEvent, EventHub, FpsEvent, HazardEvent, SourceEvent, dumps
from ..inference.contract import Detection, DetectParams, Dropped, Frame, JpegFrame, Outcome, Result
from ..inference.frames import check_jpeg
from ..observability import Observability, SourceStats
from .fps import AdaptiveFps, FpsChange, RateLimiter
from .hazards import HazardTracker, engine_params, judged_and_shown, reindex
from .replies import detections_reply, dropped_reply, error_reply
from .scheduler import Job, Scheduler

MAX_UNANSWERED = 256  # a peer that never reads replies stops being read from (TCP backpressure)
# Frames kept for replies not yet sent (hazard starts carry their frame): beyond this, stop reading too.
MAX_HELD_BYTES = 4 << 20


@dataclass(slots=True)
class Services:
    """The shared services a source reports to."""

    scheduler: Scheduler
    hub: EventHub
    obs: Observability


class _Slot(NamedTuple):
    frame_id: int
    timestamp: float | None
    outcome: asyncio.Future[Result | Dropped]
    frame: Frame | None


class Source:
    """One frame source; `async_run_writer` answers every admitted frame exactly once, in arrival order."""

    kind = "source"

    def __init__(
        self, source_id: str, session_id: str, config: Config, labels: tuple[str, ...], services: Services
    ) -> None:
        self.id = session_id
        self.client_id = source_id
        self.labels = labels
        self.services = services
        self.stats = SourceStats()
        self.params = DetectParams()  # what the peer asked to see
        self._engine_params = DetectParams()  # what inference runs with: never above the server's threshold
        self._cfg = config
        s = config.streaming
        now = time.monotonic()
        self.fps = AdaptiveFps(floor=s.min_fps, ceiling=s.max_fps, start=s.default_fps)
        self.limiter = RateLimiter(self.fps.limit, now)
        self.hazards = HazardTracker(source_id, config.hazards)
        self.last_activity = now
        self._seq = 0
        self._outbox: asyncio.Queue[_Slot | None] = asyncio.Queue()
        self.held_bytes = 0
        self.room = asyncio.Event()
        self.room.set()
        self._announcing: set[asyncio.Task[None]] = set()

    # -- what a subclass provides --------------------------------------------------------------------------
    async def async_deliver(self, text: str) -> bool:
        """Send one frame's reply to the peer; False when it could not be delivered."""
        return True

    async def async_control(self, obj: dict[str, Any]) -> None:
        """Send a control message (not ordered with frame replies)."""

    async def async_close(self, code: int, reason: bytes) -> None:
        """End the source from our side (shutdown, replaced); must not raise."""

    # -- admission -----------------------------------------------------------------------------------------
    @property
    def unanswered(self) -> int:
        """Frames received and not yet answered."""
        return self._outbox.qsize()

    def jpeg(self, data: bytes, frame_id: int | None, timestamp: float | None) -> None:
        """Admit one JPEG: its header is checked here, once; bad ones are answered with the error."""
        eng = self._cfg.engine
        try:
            width, height = check_jpeg(data, eng.max_frame_bytes, eng.max_frame_pixels)
        except FrameError as exc:
            self.answer(frame_id, exc)
            return
        self.frame(JpegFrame(data, width, height), frame_id, timestamp)

    def frame(self, frame: Frame, frame_id: int | None, timestamp: float | None) -> None:
        """Admit one checked frame: dropped by the rate limit, or handed to the scheduler (latest wins)."""
        arrived = time.perf_counter()
        fut: asyncio.Future[Result | Dropped] = asyncio.get_running_loop().create_future()
        if self.limiter.allow(time.monotonic()):
            job = Job(self, frame, self._engine_params, fut, arrived)
            self.services.scheduler.submit(job, self._cfg.streaming.queue_size)
            self._enqueue(frame_id, timestamp, fut, frame)
        else:
            fut.set_result(Dropped("rate"))
            self._enqueue(frame_id, timestamp, fut, None)  # its reply needs no pixels: do not hold them

    def answer(self, frame_id: int | None, exc: EdgeAgentError) -> None:
        """A frame that is unusable as such: answer it with an error, in order."""
        fut: asyncio.Future[Result | Dropped] = asyncio.get_running_loop().create_future()
        fut.set_exception(exc)
        self._enqueue(frame_id, None, fut, None)

    def _enqueue(
        self,
        frame_id: int | None,
        timestamp: float | None,
        fut: asyncio.Future[Result | Dropped],
        frame: Frame | None,
    ) -> None:
        self._seq += 1
        self.services.obs.received(self.stats)
        self._outbox.put_nowait(_Slot(self._seq if frame_id is None else frame_id, timestamp, fut, frame))
        self.held_bytes += _nbytes(frame)
        if self._outbox.qsize() >= MAX_UNANSWERED or self.held_bytes > MAX_HELD_BYTES:
            self.room.clear()

    def configure(
        self,
        *,
        confidence: float | None = None,
        iou: float | None = None,
        classes: frozenset[int] | None = None,
        clear_classes: bool = False,
        fps_limit: float | None = None,
    ) -> dict[str, Any]:
        """Change what the peer sees and its rate limit; hazard rules keep the server's thresholds."""
        p = self.params
        self.params = DetectParams(
            confidence=p.confidence if confidence is None else confidence,
            iou=p.iou if iou is None else iou,
            classes=None if clear_classes else (p.classes if classes is None else classes),
        )
        self._engine_params = engine_params(
            self.params.confidence, self.params.iou, self._cfg.detection.confidence
        )
        if fps_limit is not None:
            s = self._cfg.streaming
            self.fps.set_bounds(min(s.min_fps, fps_limit), fps_limit, fps_limit)
            self.limiter.set_rate(self.fps.limit)
            self._announce(FpsChange(self.fps.limit, f"client asked for {fps_limit:g} fps"))
        return self.effective()

    def _announce(self, change: FpsChange) -> None:
        """A limit set outside the writer: tell the peer (after the reply being sent now) and the hub."""
        self.services.hub.publish(FpsEvent(self.client_id, change.fps_limit, change.reason))
        task = asyncio.get_running_loop().create_task(self._async_tell(change))
        self._announcing.add(task)
        task.add_done_callback(self._announcing.discard)

    async def _async_tell(self, change: FpsChange) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.async_control({"type": "fps", "fps_limit": change.fps_limit, "reason": change.reason})

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

    # -- replies -------------------------------------------------------------------------------------------
    def close_outbox(self) -> None:
        """Tell the writer no more frames will come."""
        self._outbox.put_nowait(None)

    async def async_run_writer(self) -> None:
        """Await each frame's outcome in arrival order, answer it, then record and publish it."""
        while (slot := await self._outbox.get()) is not None:
            outcome = await _outcome(slot.outcome)
            if isinstance(outcome, Dropped) and outcome.reason == "closed":
                self._release(slot)
                continue
            text, events = self._reply(slot, outcome)
            self._release(slot)
            sent = await self.async_deliver(text)
            # After the reply went out: bookkeeping stays off the frame's latency.
            self.services.obs.record(self.stats, outcome)
            change = self._adapt(outcome)
            if sent:
                self._publish(events, change)
                if change is not None:
                    await self.async_control(
                        {"type": "fps", "fps_limit": change.fps_limit, "reason": change.reason}
                    )

    def _release(self, slot: _Slot) -> None:
        """The slot's frame is no longer needed (its reply text is built): count it out, maybe read again."""
        self.held_bytes -= _nbytes(slot.frame)
        if self._outbox.qsize() <= MAX_UNANSWERED // 2 and self.held_bytes <= MAX_HELD_BYTES // 2:
            self.room.set()

    def _reply(self, slot: _Slot, outcome: Outcome) -> tuple[str, list[Any]]:
        """The reply's text, and the events it causes (detections, hazard transitions)."""
        if isinstance(outcome, Result):
            shown, hazards, events = self._detections(slot, outcome)
            text = dumps(detections_reply(slot.frame_id, slot.timestamp, outcome, hazards, shown))
            events.insert(0, DetectionsEvent(self.client_id, slot.frame_id, outcome, hazards, text))
            return text, events
        if isinstance(outcome, Dropped):
            return dumps(dropped_reply(slot.frame_id, outcome.reason)), []
        return dumps(error_reply(slot.frame_id, outcome)), []

    def _detections(
        self, slot: _Slot, result: Result
    ) -> tuple[Sequence[Detection], list[dict[str, Any]], list[Any]]:
        """What the peer sees, and the hazard rules run once on the server's own threshold."""
        p = self.params
        judged, shown = judged_and_shown(
            result.detections, p.confidence, p.classes, self._cfg.detection.confidence
        )
        triggered, events = self.hazards.update(judged, result.image_size, slot.frame_id, slot.frame)
        reindex(triggered, judged, shown)
        return shown, triggered, events  # a new list per frame already: no copy

    def _adapt(self, outcome: Outcome) -> FpsChange | None:
        """Count what the session got (processed, or dropped for backpressure) towards its next limit."""
        if not self._cfg.streaming.adaptive_fps:
            return None
        if isinstance(outcome, Result):
            processed = True
        elif isinstance(outcome, Dropped) and outcome.reason == "backpressure":
            processed = False
        else:
            return None  # rate drops are the peer's own excess; errors say nothing about capacity
        now = time.monotonic()
        shares = self.services.scheduler.shares
        change = self.fps.observe(
            processed, now, lambda: shares.share(self, now, self.fps.limit, self.fps.ceiling)
        )
        if change is not None:
            self.limiter.set_rate(change.fps_limit)
        return change

    def _publish(self, events: list[Any], change: FpsChange | None) -> None:
        hub = self.services.hub
        for ev in events:
            hub.publish(ev)
        if change is not None:
            hub.publish(FpsEvent(self.client_id, change.fps_limit, change.reason))

    # -- lifecycle -----------------------------------------------------------------------------------------
    def connected(self) -> None:
        """Announce the source on the hub."""
        self.services.hub.publish(SourceEvent(self.client_id, "connected", self.id))

    def disconnected(self, reason: str) -> None:
        """Forget waiting frames, end active hazards and announce the end with the source's figures."""
        self.services.scheduler.cancel_owner(self)
        self.close_outbox()
        hub = self.services.hub
        ev: HazardEvent
        for ev in self.hazards.end_all("client disconnected"):
            hub.publish(ev)
        hub.publish(SourceEvent(self.client_id, "disconnected", self.id, reason, self.summary()))

    def summary(self) -> dict[str, Any]:
        """Per-source figures for dashboards."""
        return {
            "session_id": self.id,
            "client_id": self.client_id,
            "fps_limit": self.fps.limit,
            **self.stats.to_json(),
            "unanswered": max(0, self.stats.received - self.stats.answered),
        }


def _nbytes(frame: Frame | None) -> int:
    if frame is None:
        return 0
    return len(frame.data) if isinstance(frame, JpegFrame) else int(frame.pixels.nbytes)


async def _outcome(fut: asyncio.Future[Result | Dropped]) -> Outcome:
    try:
        return await fut
    except EdgeAgentError as exc:
        return exc
