"""Live statistics over a recent window: fps, drop ratio, latency percentiles, stage report."""

from __future__ import annotations

import pytest

from edge_agent.inference.contract import Timings
from edge_agent.observability.stats import LiveStats


def test_live_stats_window() -> None:
    stats = LiveStats(max_sessions=4, window_s=10)
    for i in range(20):
        stats.record_result(Timings(total=float(i + 1), inference=float(i)), now=100.0 + i * 0.1)
    for _ in range(5):
        stats.record_drop(now=102.0)
    assert stats.drop_ratio(now=102.0) == pytest.approx(5 / 25)
    assert stats.latency_ms(50, now=102.0) == pytest.approx(10.0, abs=1)
    assert stats.total_fps(now=102.0) == pytest.approx(20 / 2.0)
    assert stats.drop_ratio(now=200.0) == 0.0 and stats.latency_ms(50, now=200.0) is None
    report = stats.stage_report(now=102.0)
    assert report["bottlenecks"]["inference"] == 19  # the first frame has inference 0
    snap = stats.snapshot()
    assert set(snap) == {
        "active_sessions",
        "max_sessions",
        "total_fps",
        "drop_ratio",
        "latency_p50_ms",
        "latency_p95_ms",
    }
