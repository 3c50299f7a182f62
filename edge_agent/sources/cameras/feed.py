"""What a camera reader talks to: state reports, counters, pacing, and a one-frame mailbox to the loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Protocol

from ...errors import EdgeAgentError
from ...inference.contract import Frame
from .status import CameraStatus, State, StreamInfo


class StreamError(EdgeAgentError):
    """A camera stream failed in a way worth a clear reason (HTTP status, wrong content, no video...)."""

    code = "camera_stream"


class Feed(Protocol):
    """The camera as its reader sees it; every method is safe to call from the reader's thread."""

    status: CameraStatus
    stopping: threading.Event

    def report(self, state: State, reason: str, info: StreamInfo | None = None) -> None:
        """Enter a state (connecting, streaming)."""

    def failed(self, error: str, delay: float) -> None:
        """The stream failed; the next attempt is in `delay` s."""

    def interval(self) -> float:
        """Seconds between frames worth sending to inference now."""

    def offer(self, frame: Frame | bytes, frame_id: int, timestamp: float) -> None:
        """A frame (pixels, or JPEG bytes as they came) for inference; only the newest one is kept."""


class Pacer:
    """Lets through at most one frame per `interval()`: the rest are decoded and let go, never converted."""

    def __init__(self, interval: Callable[[], float]) -> None:
        self._interval = interval
        self._due = 0.0

    def due(self, now: float) -> bool:
        """True when a frame now should go to inference."""
        if now < self._due:
            return False
        step = self._interval()
        # Catch up at most one step: a late frame does not earn a burst afterwards.
        self._due = max(self._due + step, now + step * 0.5)
        return True


class Mailbox:
    """Hands the newest frame from a reader thread to the loop: one pending callback at most, newest wins."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, deliver: Callable[[Frame | bytes, int, float], None]
    ) -> None:
        self._loop = loop
        self._deliver = deliver
        self._lock = threading.Lock()
        self._item: tuple[Frame | bytes, int, float] | None = None
        self.replaced = 0  # frames overwritten before the loop took them

    def put(self, frame: Frame | bytes, frame_id: int, timestamp: float) -> None:
        """Reader thread: leave the frame for the loop (replacing one not yet taken)."""
        with self._lock:
            pending = self._item is not None
            self._item = (frame, frame_id, timestamp)
        if pending:
            self.replaced += 1
            return
        loop_call(self._loop, self._take)

    def _take(self) -> None:
        with self._lock:
            item, self._item = self._item, None
        if item is not None:
            self._deliver(*item)


def loop_call(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    """Run fn on the loop from a reader thread (ignored once the loop is closed)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn)
