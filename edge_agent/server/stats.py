"""Live figures over a recent window, cheap enough for every health check."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from ..types import STAGES, Timings

_STAGE_NAMES = STAGES[:-1]  # every stage but "total"


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class LiveStats:
    """Recent outcomes (bounded by count and age) plus session counts, for /healthz and dashboards."""

    def __init__(self, max_sessions: int, window_s: float = 10.0, max_samples: int = 2048) -> None:
        self.max_sessions = max_sessions
        self.active_sessions = 0
        self.window_s = window_s
        # (monotonic time, latency ms or None for a drop/error, timings or None)
        self._recent: deque[tuple[float, float | None, Timings | None]] = deque(maxlen=max_samples)
        self.processed_total = 0
        self.dropped_total = 0
        self.errors_total = 0

    def record_result(self, timings: Timings, now: float | None = None) -> None:
        """A frame was processed."""
        self.processed_total += 1
        self._recent.append((time.monotonic() if now is None else now, timings.total, timings))

    def record_drop(self, now: float | None = None) -> None:
        """A frame was dropped."""
        self.dropped_total += 1
        self._recent.append((time.monotonic() if now is None else now, None, None))

    def record_error(self) -> None:
        """A frame was answered with an error (not part of the drop ratio)."""
        self.errors_total += 1

    def _window(self, now: float | None) -> list[tuple[float, float | None, Timings | None]]:
        start = (time.monotonic() if now is None else now) - self.window_s
        return [r for r in self._recent if r[0] >= start]

    def total_fps(self, now: float | None = None) -> float:
        """Frames processed per second over the window (all sessions)."""
        now = time.monotonic() if now is None else now
        done = [r for r in self._window(now) if r[1] is not None]
        if not done:
            return 0.0
        # Over the time since the oldest frame in the window, so a burst after idling reads right.
        return len(done) / min(self.window_s, max(now - done[0][0], 1.0))

    def drop_ratio(self, now: float | None = None) -> float:
        """Share of recent frames that were dropped (0 when idle)."""
        window = self._window(now)
        if not window:
            return 0.0
        return sum(1 for r in window if r[1] is None) / len(window)

    def latency_ms(self, p: float, now: float | None = None) -> float | None:
        """p-th percentile of recent total latency in ms, None when idle."""
        return _percentile([r[1] for r in self._window(now) if r[1] is not None], p)

    def stage_report(self, now: float | None = None) -> dict[str, Any]:
        """Per-stage averages and how often each stage was the slowest (the bottleneck)."""
        timings = [r[2] for r in self._window(now) if r[2] is not None]
        averages = {s: 0.0 for s in STAGES}
        bottlenecks = {s: 0 for s in _STAGE_NAMES}
        for t in timings:
            for s in STAGES:
                averages[s] += getattr(t, s)
            bottlenecks[max(_STAGE_NAMES, key=lambda s: getattr(t, s))] += 1
        n = max(len(timings), 1)
        return {"averages_ms": {s: round(v / n, 2) for s, v in averages.items()}, "bottlenecks": bottlenecks}

    def snapshot(self) -> dict[str, Any]:
        """All live figures as JSON-ready values."""
        now = time.monotonic()
        p50, p95 = self.latency_ms(50, now), self.latency_ms(95, now)
        return {
            "active_sessions": self.active_sessions,
            "max_sessions": self.max_sessions,
            "total_fps": round(self.total_fps(now), 2),
            "drop_ratio": round(self.drop_ratio(now), 4),
            "latency_p50_ms": None if p50 is None else round(p50, 2),
            "latency_p95_ms": None if p95 is None else round(p95, 2),
        }
