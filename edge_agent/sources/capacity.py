"""What the pipeline can process (frames/s, measured) and each owner's fair share of it.

Capacity is measured, not configured: completions divided by the time the pipeline was busy, where
busy counts `min(in flight, parallel) / parallel` (parallel = the device's streams). Saturated, that is
the plain completion rate; with one frame at a time on a two-stream device, half the frame's time counts,
so a lone client is told what the box could give it, not only what it happens to use.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

UTILISATION = 0.9  # shares add up to this much of capacity: headroom for jitter, so backpressure stays rare
OWNER_TIMEOUT = 2.0  # s without a frame before an owner stops counting as active
MAX_OWNERS = 1024  # owners remembered at once


class Capacity:
    """Frames per second the pipeline completes while busy, as the median of recent windows."""

    def __init__(self, window_s: float = 1.0, keep: int = 5) -> None:
        self.window_s = window_s
        self._in_flight = 0
        self._parallel = 1
        self._stamp: float | None = None
        self._busy = 0.0
        self._done = 0
        self._window_start: float | None = None
        self._samples: deque[float] = deque(maxlen=keep)

    @property
    def fps(self) -> float | None:
        """The estimate, or None before the first full window."""
        return statistics.median(self._samples) if self._samples else None

    def _advance(self, now: float) -> None:
        if self._stamp is not None:
            self._busy += (now - self._stamp) * min(self._in_flight, self._parallel) / self._parallel
        self._stamp = now
        if self._window_start is None:
            self._window_start = now

    def started(self, now: float, parallel: int) -> None:
        """A frame was handed to the engine (`parallel`: how many it runs at once)."""
        self._advance(now)
        self._parallel = max(1, parallel)
        self._in_flight += 1

    def finished(self, now: float, processed: bool = True) -> None:
        """A frame handed to the engine came back; only processed ones count (a corrupt frame fails fast)."""
        self._advance(now)
        self._in_flight = max(0, self._in_flight - 1)
        self._done += processed
        assert self._window_start is not None
        if now - self._window_start >= self.window_s and self._done >= 3 and self._busy > 0.05:
            self._samples.append(self._done / self._busy)
            self._busy, self._done, self._window_start = 0.0, 0, now


@dataclass(slots=True)
class _Offer:
    rate: float  # frames/s submitted over the last full window
    count: int
    window_start: float
    last_seen: float
    limit: float | None = None  # the owner's fps limit now, when it has one
    ceiling: float = float("inf")  # the most it may ever be given (max_fps, or the client's own fps_limit)

    def demand(self) -> float:
        """What the owner would take: up to its ceiling while it sends near its limit (it may want more)."""
        if self.limit is not None and self.rate >= 0.8 * self.limit:
            return self.ceiling
        return self.rate * 1.1


class FairShare:
    """Max-min fair shares: owners sending well below their limit keep what they send, the rest split."""

    def __init__(self, capacity: Capacity, window_s: float = 1.0) -> None:
        self.capacity = capacity
        self.window_s = window_s
        self._offers: dict[Hashable, _Offer] = {}

    def offered(self, owner: Hashable, now: float) -> None:
        """An owner submitted a frame."""
        offer = self._offers.get(owner)
        if offer is None:
            if len(self._offers) >= MAX_OWNERS:  # e.g. one owner per /v1/detect request: stay bounded
                self._prune(now)
            self._offers[owner] = _Offer(0.0, 1, now, now)
            return
        offer.count += 1
        offer.last_seen = now
        if now - offer.window_start >= self.window_s:
            offer.rate = offer.count / (now - offer.window_start)
            offer.count, offer.window_start = 0, now

    def _prune(self, now: float) -> None:
        for owner in [o for o, r in self._offers.items() if now - r.last_seen > OWNER_TIMEOUT]:
            del self._offers[owner]
        while len(self._offers) >= MAX_OWNERS:  # all recent: forget the oldest
            del self._offers[next(iter(self._offers))]

    def forget(self, owner: Hashable) -> None:
        """The owner is gone."""
        self._offers.pop(owner, None)

    def share(
        self, owner: Hashable, now: float, limit: float | None = None, ceiling: float = float("inf")
    ) -> float | None:
        """Frames/s `owner` (now limited to `limit`) can count on, or None while capacity is unknown."""
        if owner in self._offers:
            self._offers[owner].limit, self._offers[owner].ceiling = limit, ceiling
        fps = self.capacity.fps
        if fps is None:
            return None
        self._prune(now)
        others = [r.demand() for o, r in self._offers.items() if o is not owner]
        return water_fill(fps * UTILISATION, others)


def water_fill(budget: float, others: list[float]) -> float:
    """What is left for one more claimant of unbounded demand after max-min fair filling of `others`."""
    remaining, claimants = budget, len(others) + 1
    for demand in sorted(others):
        if demand >= remaining / claimants:
            break
        remaining -= demand
        claimants -= 1
    return remaining / claimants
