"""Live figures over a recent window (all sources) and per source, cheap enough for every health check."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..inference.contract import STAGES, Timings
from .window import LatencyWindow, percentile

_STAGE_NAMES = STAGES[:-1]  # every stage but "total"


@dataclass(slots=True)
class SourceStats:
    """One source's frame counts and recent latencies (fixed memory)."""

    received: int = 0
    processed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency: LatencyWindow = field(default_factory=lambda: LatencyWindow(256))

    @property
    def answered(self) -> int:
        """Frames that got a reply of any kind."""
        return self.processed + sum(self.dropped.values()) + sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        """Counts and latency percentiles for dashboards."""
        p50, p95 = self.latency.percentile(50), self.latency.percentile(95)
        return {
            "received": self.received,
            "processed": self.processed,
            "dropped": dict(self.dropped),
            "errors": dict(self.errors),
            "latency_p50_ms": None if p50 is None else round(p50, 2),
            "latency_p95_ms": None if p95 is None else round(p95, 2),
        }


class LiveStats:
    """Recent outcomes (bounded by count and age) plus session counts, for /healthz and dashboards."""

    def __init__(self, max_sessions: int, window_s: float = 10.0, max_samples: int = 2048) -> None:
        self.max_sessions = max_sessions
        self.active_sessions = 0
        self.window_s = window_s
        # (monotonic time, timings, or None for a drop)
        self._recent: deque[tuple[float, Timings | None]] = deque(maxlen=max_samples)
        self._shed: deque[float] = deque(maxlen=max_samples)  # times of backpressure drops (overload)
        self.processed_total = 0
        self.dropped_total = 0
        self.errors_total = 0

    def record_result(self, timings: Timings, now: float | None = None) -> None:
        """A frame was processed."""
        self.processed_total += 1
        self._recent.append((time.monotonic() if now is None else now, timings))

    def record_drop(self, now: float | None = None, reason: str = "backpressure") -> None:
        """A frame was dropped; `backpressure` drops (the engine could not keep up) also count as overload."""
        now = time.monotonic() if now is None else now
        self.dropped_total += 1
        self._recent.append((now, None))
        if reason == "backpressure":
            self._shed.append(now)

    def overload_ratio(self, now: float | None = None) -> tuple[float, int]:
        """Share of recent frames dropped because the engine was busy, and how many frames that is out of.

        Rate drops (a client sending faster than its limit) and frames of closed sessions are not overload."""
        now = time.monotonic() if now is None else now
        frames = len(self._window(now))
        shed = sum(1 for t in self._shed if t >= now - self.window_s)
        return (shed / frames if frames else 0.0), frames

    def record_error(self) -> None:
        """A frame was answered with an error (not part of the drop ratio)."""
        self.errors_total += 1

    def _window(self, now: float | None) -> list[tuple[float, Timings | None]]:
        start = (time.monotonic() if now is None else now) - self.window_s
        return [r for r in self._recent if r[0] >= start]

    def _timings(self, now: float | None) -> list[Timings]:
        return [t for _, t in self._window(now) if t is not None]

    def total_fps(self, now: float | None = None) -> float:
        """Frames processed per second over the window (all sources)."""
        now = time.monotonic() if now is None else now
        done = [stamp for stamp, t in self._window(now) if t is not None]
        if not done:
            return 0.0
        # Over the time since the oldest frame in the window, so a burst after idling reads right.
        return len(done) / min(self.window_s, max(now - done[0], 1.0))

    def drop_ratio(self, now: float | None = None) -> float:
        """Share of recent frames that were dropped (0 when idle)."""
        window = self._window(now)
        if not window:
            return 0.0
        return sum(1 for _, t in window if t is None) / len(window)

    def processed_recent(self, now: float | None = None) -> int:
        """Frames processed within the window."""
        return len(self._timings(now))

    def latency_ms(self, p: float, now: float | None = None) -> float | None:
        """p-th percentile of recent total latency (arrival to result) in ms, None when idle."""
        return percentile([t.total for t in self._timings(now)], p)

    def stage_report(self, now: float | None = None) -> dict[str, Any]:
        """Per-stage averages and how often each stage was the slowest (the bottleneck)."""
        timings = self._timings(now)
        averages = dict.fromkeys(STAGES, 0.0)
        bottlenecks = dict.fromkeys(_STAGE_NAMES, 0)
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
