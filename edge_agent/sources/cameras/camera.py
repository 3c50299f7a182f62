"""One configured camera: its reader (thread or task), its CameraSource session and its status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import threading
import time
from typing import Any

from ...config import Config
from ...config.cameras import CameraConfig
from ...inference.contract import Frame
from ..base import Services
from .av_reader import AvReader
from .feed import Mailbox, loop_call
from .http_reader import HttpReader
from .source import CameraSource
from .status import CameraStatus, State, StreamInfo, rate_of

log = logging.getLogger(__name__)
# A reader notices the stop at its next packet; one blocked in a read ends at its read timeout by itself
# (a daemon thread whose reports to a stopped camera are ignored), so stopping waits at most this long.
STOP_TIMEOUT = 3.0


class Camera:
    """A camera the manager started; `async_stop` ends its reader, hazards and session."""

    def __init__(
        self, cam: CameraConfig, config: Config, labels: tuple[str, ...], services: Services
    ) -> None:
        self.cam = cam
        self.status = CameraStatus()
        self.stopping = threading.Event()
        self.source = CameraSource(cam.id, secrets.token_hex(8), config, labels, services)
        if cam.fps is not None:
            self.source.configure(fps_limit=cam.fps)
        self._loop = asyncio.get_running_loop()
        self._mailbox = Mailbox(self._loop, self._admit)
        self._writer: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread_done = asyncio.Event()
        self._av: AvReader | None = None
        self._max_bytes = config.engine.max_frame_bytes
        self._max_pixels = config.engine.max_frame_pixels

    # -- lifecycle (loop) ----------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the session and start reading."""
        self._writer = self._loop.create_task(self.source.async_run_writer(), name=f"camera-{self.cam.id}-w")
        self.source.connected()
        if self.cam.kind == "http":
            reader = HttpReader(self.cam, self, self._max_bytes, self._max_pixels)
            self._task = self._loop.create_task(reader.async_run(), name=f"camera-{self.cam.id}")
        else:
            self._av = AvReader(self.cam, self, lambda: loop_call(self._loop, self._thread_done.set))
            self._av.start()

    async def async_stop(self, reason: str) -> None:
        """Stop the reader (thread joined or task cancelled), end hazards and the session."""
        self.stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._av is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self._thread_done.wait()
            if self._av.thread.is_alive():
                log.warning("camera %s: reader still blocked; it ends at its read timeout", self.cam.id)
        self.status.to("stopped", reason)
        self.source.disconnected(reason)
        if self._writer is not None:
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self._writer
            except TimeoutError:
                self._writer.cancel()

    # -- Feed: called by the reader (thread-safe) ------------------------------------------------------------
    def report(self, state: State, reason: str, info: StreamInfo | None = None) -> None:
        """Enter a state."""
        self._on_loop(lambda: self._set_state(state, reason, info))

    def failed(self, error: str, delay: float) -> None:
        """The stream failed; active hazards end (nothing is watched until it is back)."""
        self._on_loop(lambda: self._set_failed(error, delay))

    def interval(self) -> float:
        """Seconds between frames for inference: the session's (adaptive) limit, capped by `fps`."""
        rate = self.source.limiter.rate
        if self.cam.fps is not None:
            rate = min(rate, self.cam.fps)
        return 1.0 / rate if rate > 0 else math.inf

    def offer(self, frame: Frame | bytes, frame_id: int, timestamp: float) -> None:
        """A frame for inference: the newest one wins."""
        if self._task is not None:  # HTTP reader: already on the loop
            self._admit(frame, frame_id, timestamp)
        else:
            self._mailbox.put(frame, frame_id, timestamp)

    # -- loop side -----------------------------------------------------------------------------------------
    def _on_loop(self, fn: Any) -> None:
        if self._task is not None:
            fn()
        else:
            loop_call(self._loop, fn)

    def _set_state(self, state: State, reason: str, info: StreamInfo | None) -> None:
        if self.stopping.is_set():
            return
        self.status.to(state, reason)
        if info is not None:
            self.status.info = info

    def _set_failed(self, error: str, delay: float) -> None:
        if self.stopping.is_set():
            return
        self.status.failed(error, delay)
        hub = self.source.services.hub
        for ev in self.source.hazards.end_all(f"camera down: {error}"):
            hub.publish(ev)

    def _admit(self, frame: Frame | bytes, frame_id: int, timestamp: float) -> None:
        if self.stopping.is_set():
            return
        if isinstance(frame, bytes):
            self.source.jpeg(frame, frame_id, timestamp)
        else:
            self.source.frame(frame, frame_id, timestamp)

    def to_json(self) -> dict[str, Any]:
        """The camera in `/v1/cameras` (URL with its password masked)."""
        now = time.monotonic()
        stats = self.source.stats
        return {
            "id": self.cam.id,
            "url": self.cam.display_url,
            "kind": self.cam.kind,
            "enabled": True,
            **self.status.to_json(now),
            "processed_fps": rate_of(self.source.answered_at, now),
            "fps_limit": round(1.0 / self.interval(), 2),
            "frames": stats.to_json(),
        }
