"""A camera's state machine (connecting, streaming, retrying, stopped) and its reconnect backoff."""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["connecting", "streaming", "retrying", "stopped", "disabled"]
DOWN_STATES = ("connecting", "retrying")


def rate_of(times: deque[float], now: float) -> float:
    """Events per second over a window of recent event times (0 when the newest is over 2 s old)."""
    if len(times) < 2 or now - times[-1] > 2.0:
        return 0.0
    span = times[-1] - times[0]
    return round((len(times) - 1) / span, 2) if span > 0 else 0.0


class Backoff:
    """Exponential backoff with jitter: base, 2x base, 4x base … up to cap, each ±20%."""

    def __init__(self, base: float = 1.0, cap: float = 30.0, jitter: float = 0.2) -> None:
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self.attempt = 0

    def next(self) -> float:
        """The delay before the next attempt."""
        delay = min(self.cap, self.base * 2**self.attempt)
        self.attempt += 1
        return float(delay * random.uniform(1 - self.jitter, 1 + self.jitter))

    def reset(self) -> None:
        """A stream worked: start from the base delay again."""
        self.attempt = 0


@dataclass(slots=True)
class StreamInfo:
    """What the connected stream is."""

    codec: str | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None


@dataclass
class CameraStatus:
    """What `/v1/cameras`, `/healthz` and the metrics show; the state changes on the event loop only, the
    decode counters (`decoded`) are written by the reader alone."""

    state: State = "connecting"
    reason: str = "starting"
    since: float = field(default_factory=time.monotonic)
    info: StreamInfo = field(default_factory=StreamInfo)
    reconnects: int = 0
    streamed: int = 0  # 1 once the camera streamed: a later `streaming` is a reconnect
    last_error: str | None = None
    frames_decoded: int = 0
    last_frame: float | None = None  # monotonic time of the newest decoded frame
    _arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=64))

    def to(self, state: State, reason: str) -> None:
        """Enter a state (the reason says why, e.g. `retrying in 8 s: 401 Unauthorized`)."""
        if state == "streaming" and self.state != "streaming":
            self.reconnects += self.streamed
            self.streamed = 1
        self.state, self.reason, self.since = state, reason, time.monotonic()

    def failed(self, error: str, delay: float) -> None:
        """The stream failed; the next attempt is in `delay` seconds."""
        self.last_error = error
        self.to("retrying", f"retrying in {delay:.0f} s: {error}")

    def decoded(self, now: float) -> None:
        """One frame came out of the decoder (counted whether or not it went to inference)."""
        self.frames_decoded += 1
        self.last_frame = now
        self._arrivals.append(now)

    def source_fps(self, now: float) -> float:
        """Frames per second out of the decoder over the recent arrivals."""
        return rate_of(self._arrivals, now)

    def frame_age(self, now: float) -> float | None:
        """Seconds since the newest decoded frame."""
        return None if self.last_frame is None else round(now - self.last_frame, 3)

    @property
    def up(self) -> bool:
        """Streaming (or deliberately off)."""
        return self.state not in DOWN_STATES

    def to_json(self, now: float) -> dict[str, Any]:
        """The state part of `/v1/cameras`."""
        i = self.info
        return {
            "state": self.state,
            "reason": self.reason,
            "state_for_s": round(now - self.since, 1),
            "codec": i.codec,
            "resolution": None if i.width is None else [i.width, i.height],
            "stream_fps": i.fps,
            "source_fps": self.source_fps(now),
            "frames_decoded": self.frames_decoded,
            "last_frame_age_s": self.frame_age(now),
            "reconnects": self.reconnects,
            "last_error": self.last_error,
        }
