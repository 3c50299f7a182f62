"""Per-session frame-rate limiting and adaptive FPS control from measured latency."""

from __future__ import annotations

import statistics
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
    """Steer a session's fps limit so its latency stays near a target, without oscillating.

    Latency samples are grouped into windows of at least `window_s` seconds and `min_samples`
    samples; the window's median decides. Above `high` x target one window is enough to lower
    the limit (proportionally, by at most half); below `low` x target it takes `raise_after`
    consecutive windows to raise it by `step`. In between the limit holds (hysteresis band).
    """

    def __init__(
        self,
        *,
        target_ms: float,
        floor: float,
        ceiling: float,
        start: float,
        window_s: float = 1.0,
        min_samples: int = 3,
        high: float = 1.5,
        low: float = 0.7,
        raise_after: int = 2,
        step: float = 1.25,
    ) -> None:
        self.target_ms = target_ms
        self.floor = floor
        self.ceiling = ceiling
        self.limit = min(max(start, floor), ceiling)
        self.window_s = window_s
        self.min_samples = min_samples
        self.high = high
        self.low = low
        self.raise_after = raise_after
        self.step = step
        self._samples: list[float] = []
        self._window_start: float | None = None
        self._good_windows = 0

    def set_bounds(self, floor: float, ceiling: float, limit: float) -> None:
        """The client asked for a limit: it becomes the ceiling and the current value."""
        self.floor = min(floor, ceiling)
        self.ceiling = ceiling
        self.limit = min(max(limit, self.floor), ceiling)
        self._reset(None)

    def _reset(self, now: float | None) -> None:
        self._samples.clear()
        self._window_start = now

    def observe(self, latency_ms: float, now: float) -> FpsChange | None:
        """Record one frame's latency; return a change when the window decides one."""
        if self._window_start is None:
            self._window_start = now
        self._samples.append(latency_ms)
        if now - self._window_start < self.window_s or len(self._samples) < self.min_samples:
            return None
        median = statistics.median(self._samples)
        self._reset(now)
        return self._decide(median)

    def _decide(self, median: float) -> FpsChange | None:
        if median > self.high * self.target_ms:
            self._good_windows = 0
            factor = min(0.85, max(0.5, self.target_ms / median))
            new = max(self.floor, round(self.limit * factor, 1))
            why = f"latency {median:.0f} ms above {self.high * self.target_ms:.0f} ms"
        elif median < self.low * self.target_ms:
            self._good_windows += 1
            if self._good_windows < self.raise_after:
                return None
            self._good_windows = 0
            new = min(self.ceiling, round(self.limit * self.step, 1))
            why = f"latency {median:.0f} ms below {self.low * self.target_ms:.0f} ms"
        else:
            self._good_windows = 0
            return None
        if abs(new - self.limit) < 1e-6:
            return None
        self.limit = new
        return FpsChange(new, why)
