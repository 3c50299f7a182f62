"""Per-session frame-rate limiting, and adaptive FPS: each session is told its fair share of what the box does."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class RateLimiter:
    """Token bucket: `rate` frames per second with a small burst to absorb sender jitter."""

    def __init__(self, rate: float, now: float, burst_s: float = 0.25) -> None:
        self.burst_s = burst_s
        self.rate = rate
        self.burst = self._burst(rate)
        self._tokens = self.burst
        self._stamp = now

    def _burst(self, rate: float) -> float:
        # Two frames, or a quarter second's worth at high rates (event-loop stalls bunch frames up).
        return max(2.0, rate * self.burst_s)

    def set_rate(self, rate: float) -> None:
        """Change the rate; tokens already earned are kept (up to the new burst)."""
        self.rate = rate
        self.burst = self._burst(rate)

    def allow(self, now: float) -> bool:
        """Take one token if available."""
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(frozen=True, slots=True)
class FpsChange:
    """A new limit and why it was chosen."""

    fps_limit: float
    reason: str


class AdaptiveFps:
    """Steer a session's fps limit to what the box can give it, from what the session really got.

    Outcomes are counted in windows of at least `window_s` seconds and `min_frames` frames. At each
    window's end the target is the session's fair share of the measured capacity (`share()`); if more than
    `max_backpressure` of the last `loss_frames` (or more) frames were dropped for backpressure, it is at
    most the rate the session actually got processed, held until the share changes (raised by 20% after
    `probe_after` clean spans, in case the pipeline recovered). The limit moves to the target only when
    they differ by more than `deadband` (relative), in one step, clamped to [floor, ceiling]: a steady
    load settles and stays.
    """

    def __init__(
        self,
        *,
        floor: float,
        ceiling: float,
        start: float,
        window_s: float = 1.0,
        min_frames: int = 3,
        max_backpressure: float = 0.05,
        deadband: float = 0.1,
        probe_after: int = 3,
        loss_frames: int = 20,
    ) -> None:
        self.floor = floor
        self.ceiling = ceiling
        self.limit = min(max(start, floor), ceiling)
        self.window_s = window_s
        self.min_frames = min_frames
        self.max_backpressure = max_backpressure
        self.deadband = deadband
        self.probe_after = probe_after
        self.loss_frames = loss_frames
        self._held: float | None = None  # what the session really got when backpressure last showed
        self._held_share = 0.0
        self._clean = 0
        self._processed = 0
        self._backpressure = 0
        self._window_start: float | None = None
        self._loss_done = self._loss_dropped = 0
        self._loss_since = 0.0

    def set_bounds(self, floor: float, ceiling: float, limit: float) -> None:
        """The client asked for a limit: it becomes the ceiling and the current value."""
        self.floor = min(floor, ceiling)
        self.ceiling = ceiling
        self.limit = min(max(limit, self.floor), ceiling)
        self._reset(None)

    def _reset(self, now: float | None) -> None:
        self._processed = self._backpressure = 0
        self._window_start = now
        # Backpressure is judged over >= loss_frames frames: one drop in a short window is noise.
        self._loss_done = self._loss_dropped = 0
        self._loss_since = 0.0 if now is None else now

    def observe(self, processed: bool, now: float, share: Callable[[], float | None]) -> FpsChange | None:
        """Count one frame that reached the scheduler (processed, or dropped for backpressure)."""
        if self._window_start is None:
            self._reset(now)
            self._window_start = now
        self._processed += processed
        self._backpressure += not processed
        span = now - self._window_start
        if span < self.window_s or self._processed + self._backpressure < self.min_frames:
            return None
        self._loss_done += self._processed
        self._loss_dropped += self._backpressure
        self._processed = self._backpressure = 0
        self._window_start = now
        got, lost, frames = None, 0.0, self._loss_done + self._loss_dropped
        if frames >= self.loss_frames:
            got, lost = self._loss_done / (now - self._loss_since), self._loss_dropped / frames
            self._reset(now)
        return self._decide(share(), got, lost)

    def _decide(self, share: float | None, got: float | None, lost: float) -> FpsChange | None:
        target, why = self.limit, ""
        if share is not None:
            target, why = share, f"fair share of measured capacity: {share:.1f} fps"
            if self._held is not None and abs(share - self._held_share) > self.deadband * self._held_share:
                self._held = None  # sessions came or went, or capacity changed: start from the share again
        if got is not None and lost > self.max_backpressure and got < target:
            self._held, self._held_share, self._clean = got, target, 0
        elif got is not None and self._held is not None:
            self._clean += 1
            if self._clean >= self.probe_after:  # probe upwards, rarely, in case the pipeline recovered
                self._held, self._clean = self._held * 1.2, 0
        if self._held is not None and self._held < target:
            target, why = self._held, f"{self._held:.1f} fps processed ({100 * lost:.0f}% backpressure drops)"
        new = round(min(max(target, self.floor), self.ceiling), 1)
        if abs(new - self.limit) <= self.deadband * self.limit:
            return None
        self.limit = new
        return FpsChange(new, why)
