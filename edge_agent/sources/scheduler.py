"""Fair frame scheduler: sources share the engine's infer requests round-robin, latest frame wins."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import partial

from ..errors import EdgeAgentError, InferenceError
from ..inference.contract import DetectParams, Dropped, Frame, Result
from ..inference.engine import Engine
from .capacity import Capacity, FairShare

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Job:
    """One checked frame waiting for, or in, inference; `outcome` resolves exactly once.

    The engine resolves `outcome` itself (detections, or a FrameError/InferenceError as its exception);
    the scheduler only resolves it with a Dropped when the frame never reaches the engine.
    """

    owner: Hashable
    frame: Frame
    params: DetectParams
    outcome: asyncio.Future[Result | Dropped]
    arrived: float = field(default_factory=time.perf_counter)

    def drop(self, reason: str) -> None:
        """Answer the frame with a drop unless it is already answered."""
        if not self.outcome.done():
            self.outcome.set_result(Dropped(reason))


class Scheduler:
    """Dispatch waiting frames to at most `engine.num_requests` concurrent inferences, one owner at a time."""

    def __init__(self, engine: Callable[[], Engine]) -> None:
        self._engine = engine  # looked up at each dispatch: a reload swaps the engine
        self._waiting: dict[Hashable, deque[Job]] = {}
        self._ring: deque[Hashable] = deque()
        self._in_flight: dict[Hashable, int] = {}
        self._running: set[asyncio.Future[Result | Dropped]] = set()
        self._drained = asyncio.Event()
        self._drained.set()
        self.capacity = Capacity()
        self.shares = FairShare(self.capacity)
        self.tap: Callable[[Frame], None] | None = None  # sees every admitted frame (calibration reservoir)

    @property
    def running(self) -> int:
        """Frames in inference."""
        return len(self._running)

    @property
    def waiting(self) -> int:
        """Frames waiting for an infer request."""
        return sum(len(q) for q in self._waiting.values())

    def submit(self, job: Job, queue_size: int) -> None:
        """Queue a frame; if its owner already has `queue_size` waiting, the oldest is dropped (latest wins)."""
        self.shares.offered(job.owner, time.monotonic())
        queue = self._waiting.get(job.owner)
        if queue is None:
            queue = self._waiting[job.owner] = deque()
            self._ring.append(job.owner)
        while len(queue) >= queue_size:
            queue.popleft().drop("backpressure")
        queue.append(job)
        if self.tap is not None:
            self.tap(job.frame)
        self._pump()

    def cancel_owner(self, owner: Hashable) -> None:
        """Forget an owner's waiting frames (its connection closed); running ones finish."""
        self.shares.forget(owner)
        queue = self._waiting.pop(owner, None)
        if queue is None:
            return
        self._ring.remove(owner)
        for job in queue:
            job.drop("closed")

    def _pump(self) -> None:
        try:
            engine = self._engine()
            capacity = max(1, engine.num_requests)
        except EdgeAgentError:
            return  # no engine yet: frames wait
        while len(self._running) < capacity and self._ring:
            # Round-robin, except that an owner with fewer frames in flight goes first: a client that
            # sends one frame at a time never waits behind a flooder that already holds a request.
            best = min(range(len(self._ring)), key=lambda i: self._in_flight.get(self._ring[i], 0))
            owner = self._ring[best]
            del self._ring[best]
            queue = self._waiting[owner]
            job = queue.popleft()
            if queue:
                self._ring.append(owner)
            else:
                del self._waiting[owner]
            try:
                engine.submit(job.frame, job.params, job.arrived, job.outcome)
            except EdgeAgentError as exc:
                job.outcome.set_exception(exc)
                continue
            except Exception as exc:  # an engine bug must not kill the source: answer and log it
                log.exception("submit failed unexpectedly")
                job.outcome.set_exception(InferenceError(f"unexpected {type(exc).__name__}: {exc}"))
                continue
            self._in_flight[owner] = self._in_flight.get(owner, 0) + 1
            self.capacity.started(time.monotonic(), engine.streams)
            self._running.add(job.outcome)
            self._drained.clear()
            job.outcome.add_done_callback(partial(self._finished, owner))

    def _finished(self, owner: Hashable, fut: asyncio.Future[Result | Dropped]) -> None:
        processed = False
        if not fut.cancelled():
            # The source reads it; marking it retrieved keeps a closed source's errors quiet.
            processed = fut.exception() is None and isinstance(fut.result(), Result)
        self._running.discard(fut)
        self.capacity.finished(time.monotonic(), processed)
        left = self._in_flight.pop(owner) - 1
        if left:
            self._in_flight[owner] = left
        if not self._running:
            self._drained.set()
        self._pump()

    async def async_drain(self, timeout: float) -> None:
        """Drop waiting frames, wait up to `timeout` s for running ones, then give those up as `closed`."""
        for owner in list(self._waiting):
            self.cancel_owner(owner)
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError:
            for fut in list(self._running):
                if not fut.done():
                    fut.set_result(Dropped("closed"))
