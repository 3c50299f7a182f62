"""Fair frame scheduler: sessions share the engine's infer requests round-robin, latest frame wins."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from ..errors import EdgeAgentError, InferenceError
from ..types import DetectParams, Result

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Dropped:
    """The frame was not processed: `backpressure` (a newer frame replaced it), `rate` or `closed`."""

    reason: str


Outcome = Result | Dropped | EdgeAgentError


@dataclass(slots=True)
class Job:
    """One frame waiting for, or in, inference; `outcome` resolves exactly once."""

    owner: Hashable
    frame: bytes
    params: DetectParams
    outcome: asyncio.Future[Outcome]
    arrived: float = field(default_factory=time.monotonic)
    dispatched: float = 0.0

    def resolve(self, value: Outcome) -> None:
        """Set the outcome unless it is already set."""
        if not self.outcome.done():
            self.outcome.set_result(value)


Detect = Callable[[bytes, DetectParams], Awaitable[Result]]


class Scheduler:
    """Dispatch waiting frames to at most `capacity()` concurrent detections, one owner at a time."""

    def __init__(self, detect: Callable[[], Detect], capacity: Callable[[], int]) -> None:
        # Both are callables so a reloaded engine is picked up at the next dispatch.
        self._detect = detect
        self._capacity = capacity
        self._waiting: dict[Hashable, deque[Job]] = {}
        self._ring: deque[Hashable] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight: dict[Hashable, int] = {}
        self.running = 0

    @property
    def waiting(self) -> int:
        """Frames waiting for an infer request."""
        return sum(len(q) for q in self._waiting.values())

    def submit(self, job: Job, queue_size: int) -> None:
        """Queue a frame; if its owner already has `queue_size` waiting, the oldest is dropped."""
        queue = self._waiting.get(job.owner)
        if queue is None:
            queue = self._waiting[job.owner] = deque()
            self._ring.append(job.owner)
        while len(queue) >= queue_size:
            queue.popleft().resolve(Dropped("backpressure"))
        queue.append(job)
        self._pump()

    def cancel_owner(self, owner: Hashable) -> None:
        """Forget an owner's waiting frames (its connection closed); running ones finish."""
        queue = self._waiting.pop(owner, None)
        if queue is None:
            return
        self._ring.remove(owner)
        for job in queue:
            job.resolve(Dropped("closed"))

    def _next_owner(self) -> Hashable:
        # Round-robin, except that an owner with fewer frames in flight goes first: a client that
        # sends one frame at a time never waits behind a flooder that already holds a request.
        best = min(range(len(self._ring)), key=lambda i: self._in_flight.get(self._ring[i], 0))
        owner = self._ring[best]
        del self._ring[best]
        return owner

    def _pump(self) -> None:
        capacity = max(1, self._capacity())
        while self.running < capacity and self._ring:
            owner = self._next_owner()
            queue = self._waiting[owner]
            job = queue.popleft()
            if queue:
                self._ring.append(owner)
            else:
                del self._waiting[owner]
            self.running += 1
            self._in_flight[owner] = self._in_flight.get(owner, 0) + 1
            job.dispatched = time.monotonic()
            task = asyncio.create_task(self._run(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, job: Job) -> None:
        try:
            job.resolve(await self._detect()(job.frame, job.params))
        except EdgeAgentError as exc:
            job.resolve(exc)
        except asyncio.CancelledError:
            job.resolve(Dropped("closed"))
            raise
        except Exception as exc:  # an engine bug must not kill the session: answer and log it
            log.exception("detect failed unexpectedly")
            job.resolve(InferenceError(f"unexpected {type(exc).__name__}: {exc}"))
        finally:
            self.running -= 1
            left = self._in_flight.pop(job.owner) - 1
            if left:
                self._in_flight[job.owner] = left
            self._pump()

    async def async_drain(self, timeout: float) -> None:
        """Wait up to `timeout` s for running detections, then cancel what is left."""
        for owner in list(self._waiting):
            self.cancel_owner(owner)
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
