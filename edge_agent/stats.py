"""Small, allocation-free rolling statistics for the hot path."""

from __future__ import annotations

import numpy as np


class LatencyWindow:
    """The last `size` latencies in a ring buffer; percentiles are computed only when asked."""

    def __init__(self, size: int = 512) -> None:
        self._values = np.zeros(size, np.float64)
        self._count = 0

    def add(self, value_ms: float) -> None:
        """Record one latency in milliseconds."""
        self._values[self._count % self._values.size] = value_ms
        self._count += 1

    @property
    def count(self) -> int:
        """How many values were ever recorded."""
        return self._count

    def percentile(self, p: float) -> float:
        """p-th percentile of the window (0.0 when empty)."""
        n = min(self._count, self._values.size)
        return float(np.percentile(self._values[:n], p)) if n else 0.0
