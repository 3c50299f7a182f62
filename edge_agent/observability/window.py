"""The one percentile definition, and a fixed-memory window of recent latencies."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float] | np.ndarray, p: float) -> float | None:
    """Nearest-rank p-th percentile (None when empty): every latency figure we report uses this."""
    n = len(values)
    if not n:
        return None
    ordered = np.sort(np.asarray(values, np.float64))
    return float(ordered[min(n - 1, max(0, round(p / 100 * (n - 1))))])


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

    def percentile(self, p: float) -> float | None:
        """p-th percentile of the window (None when empty)."""
        return percentile(self._values[: min(self._count, self._values.size)], p)
