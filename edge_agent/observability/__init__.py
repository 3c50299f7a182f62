"""Metrics and live statistics in one place: one `record(outcome)` per frame feeds them all."""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiohttp import web

from ..errors import EdgeAgentError
from ..inference.contract import Dropped, Outcome, Result
from .metrics import Metrics
from .stats import LiveStats, SourceStats
from .window import LatencyWindow, percentile

__all__ = [
    "OBSERVABILITY",
    "LatencyWindow",
    "LiveStats",
    "Metrics",
    "Observability",
    "SourceStats",
    "percentile",
]


@dataclass
class Observability:
    """The app's metrics registry and live stats; sources report every frame here, once."""

    metrics: Metrics
    stats: LiveStats

    @classmethod
    def create(cls, max_sessions: int) -> Observability:
        """Fresh counters for one app."""
        return cls(Metrics(), LiveStats(max_sessions))

    def received(self, source: SourceStats) -> None:
        """A frame arrived from a source."""
        source.received += 1
        self.metrics.frames.received += 1

    def record(self, source: SourceStats, outcome: Outcome) -> None:
        """What became of one frame: counted for the source, the live window and Prometheus."""
        now = time.monotonic()
        if isinstance(outcome, Result):
            t = outcome.timings
            source.processed += 1
            source.latency.add(t.total)
            self.metrics.frames.observe(t)
            self.stats.record_result(t, now)
        elif isinstance(outcome, Dropped):
            source.dropped[outcome.reason] = source.dropped.get(outcome.reason, 0) + 1
            self.metrics.observe_drop(outcome.reason)
            self.stats.record_drop(now, outcome.reason)
        else:
            assert isinstance(outcome, EdgeAgentError)
            source.errors[outcome.code] = source.errors.get(outcome.code, 0) + 1
            self.metrics.observe_error(outcome.code)
            self.stats.record_error()


OBSERVABILITY: web.AppKey[Observability] = web.AppKey("observability", Observability)
