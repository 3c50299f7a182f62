"""Prometheus metrics of frames, sessions and SSE, in one registry per app (tests build many apps)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..inference.contract import STAGES, Timings

# The parts of a frame's time; their sum is about "total", which has a histogram of its own so that summing
# edge_agent_stage_seconds over `stage` never counts a frame twice.
PARTS = tuple(s for s in STAGES if s != "total")

# Milliseconds-scale stages of a ~10-500 ms pipeline, in seconds.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
DROP_REASONS = ("backpressure", "rate", "closed")


class Metrics:
    """Counters and histograms for frames and sessions; `.registry` is what /metrics exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames = FrameCounts()
        r.register(self.frames)
        self.frame_errors = Counter(
            "edge_agent_frame_errors", "Frames answered `error`, by code.", ["code"], registry=r
        )
        self.sessions_active = Gauge("edge_agent_sessions_active", "Open WebSocket sessions.", registry=r)
        self.sessions_total = Counter("edge_agent_sessions", "WebSocket sessions accepted.", registry=r)
        self.sessions_rejected = Counter(
            "edge_agent_sessions_rejected",
            "WebSocket connections refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.sse_subscribers = Gauge("edge_agent_sse_subscribers", "Connected SSE subscribers.", registry=r)
        self.sse_dropped = Counter(
            "edge_agent_sse_events_dropped", "SSE events dropped for slow readers.", registry=r
        )

    def observe_drop(self, reason: str) -> None:
        """Count a dropped frame."""
        self.frames.dropped[reason] = self.frames.dropped.get(reason, 0) + 1

    def observe_error(self, code: str) -> None:
        """Count a frame answered with an error."""
        self.frame_errors.labels(code=code).inc()


class FrameCounts(Collector):
    """Per-frame counters and stage histograms as plain numbers, turned into metrics only when scraped.

    prometheus_client's Counter and Histogram take a lock per increment: 15 per frame, about a tenth of the
    event loop's per-frame work. These are only touched on the event loop, so they need none.
    """

    def __init__(self) -> None:
        self.received = 0
        self.processed = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self._buckets = [[0] * (len(_BUCKETS) + 1) for _ in STAGES]  # last: above the largest bound
        self._sums = [0.0] * len(STAGES)

    @property
    def total_seconds(self) -> float:
        """Sum of every processed frame's total time (arrival to result), in seconds."""
        return self._sums[STAGES.index("total")]

    def observe(self, timings: Timings) -> None:
        """Count one processed frame and its stage times (milliseconds)."""
        self.processed += 1
        for i, stage in enumerate(STAGES):
            seconds = getattr(timings, stage) / 1000.0
            self._buckets[i][bisect_left(_BUCKETS, seconds)] += 1
            self._sums[i] += seconds

    def collect(self) -> Iterator[Metric]:
        """The metrics as exposed on /metrics."""
        yield CounterMetricFamily(
            "edge_agent_frames_received", "Frames received (WebSocket and /v1/detect).", value=self.received
        )
        yield CounterMetricFamily(
            "edge_agent_frames_processed", "Frames answered with detections.", value=self.processed
        )
        dropped = CounterMetricFamily(
            "edge_agent_frames_dropped", "Frames answered `dropped`, by reason.", labels=["reason"]
        )
        for reason, count in self.dropped.items():
            dropped.add_metric([reason], count)
        yield dropped
        stages = HistogramMetricFamily(
            "edge_agent_stage_seconds",
            "Time a frame spent in each stage (the parts of its total).",
            labels=["stage"],
        )
        frame = HistogramMetricFamily(
            "edge_agent_frame_seconds", "Time from a frame's arrival to its result (all stages)."
        )
        bounds = (*(str(b) for b in _BUCKETS), "+Inf")
        for stage, counts, total in zip(STAGES, self._buckets, self._sums, strict=True):
            buckets = list(zip(bounds, map(float, accumulate(counts)), strict=True))
            if stage in PARTS:
                stages.add_metric([stage], buckets, total)
            else:
                frame.add_metric([], buckets, total)
        yield stages
        yield frame
