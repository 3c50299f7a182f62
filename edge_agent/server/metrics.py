"""Prometheus metrics of the streaming API, in one registry per app (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..types import STAGES, Timings

# Milliseconds-scale stages of a ~10-500 ms pipeline, in seconds.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
DROP_REASONS = ("backpressure", "rate", "closed")


class StreamMetrics:
    """Counters and histograms for frames and sessions; `.registry` is what /metrics exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames_received = Counter(
            "edge_agent_frames_received", "Frames received (WebSocket and /v1/detect).", registry=r
        )
        self.frames_processed = Counter(
            "edge_agent_frames_processed", "Frames answered with detections.", registry=r
        )
        self.frames_dropped = Counter(
            "edge_agent_frames_dropped", "Frames answered `dropped`, by reason.", ["reason"], registry=r
        )
        self.frame_errors = Counter(
            "edge_agent_frame_errors", "Frames answered `error`, by code.", ["code"], registry=r
        )
        self.stage_seconds = Histogram(
            "edge_agent_stage_seconds",
            "Per-stage processing time of a frame.",
            ["stage"],
            buckets=_BUCKETS,
            registry=r,
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
        # Children bound once: label lookups stay off the per-frame path.
        self._stages = [(s, self.stage_seconds.labels(stage=s)) for s in STAGES]
        self._dropped = {reason: self.frames_dropped.labels(reason=reason) for reason in DROP_REASONS}

    def observe_result(self, timings: Timings) -> None:
        """Count a processed frame and its stage times."""
        self.frames_processed.inc()
        for stage, hist in self._stages:
            hist.observe(getattr(timings, stage) / 1000.0)

    def observe_drop(self, reason: str) -> None:
        """Count a dropped frame."""
        child = self._dropped.get(reason)
        (child if child is not None else self.frames_dropped.labels(reason=reason)).inc()

    def observe_error(self, code: str) -> None:
        """Count a frame answered with an error."""
        self.frame_errors.labels(code=code).inc()
