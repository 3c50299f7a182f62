"""A camera as a Source: replies go nowhere but the hub (SSE, MQTT) and the latest one is kept for snapshots."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Any

from ...config import Config
from ...inference.contract import Frame, Result
from ..base import Services, Source


class CameraSource(Source):
    """The session of one camera; it lives as long as the camera is configured (reconnects included)."""

    kind = "camera"

    def __init__(
        self, camera_id: str, session_id: str, config: Config, labels: tuple[str, ...], services: Services
    ) -> None:
        super().__init__(camera_id, session_id, config, labels, services)
        self._frames: deque[Frame | None] = deque()  # frames admitted and not yet answered, in order
        self.latest_frame: Frame | None = None
        self.latest_reply: str | None = None  # the detections JSON of `latest_frame`
        self.answered_at: deque[float] = deque(maxlen=64)  # when recent frames got detections

    def _enqueue(
        self,
        frame_id: int | None,
        timestamp: float | None,
        fut: asyncio.Future[Result | Any],
        frame: Frame | None,
    ) -> None:
        self._frames.append(frame)
        super()._enqueue(frame_id, timestamp, fut, frame)

    async def async_deliver(self, text: str) -> bool:
        """Keep the newest answered frame with its detections (the snapshot endpoint shows them)."""
        frame = self._frames.popleft() if self._frames else None
        if frame is not None and text.startswith('{"type":"detections"'):
            self.latest_frame, self.latest_reply = frame, text
            self.answered_at.append(time.monotonic())
        return True

    async def async_close(self, code: int, reason: bytes) -> None:
        """Nothing to close: the camera manager owns the camera's lifetime."""

    def latest_detections(self) -> list[dict[str, Any]]:
        """The detections shown with the latest frame."""
        if self.latest_reply is None:
            return []
        detections: list[dict[str, Any]] = json.loads(self.latest_reply)["detections"]
        return detections
