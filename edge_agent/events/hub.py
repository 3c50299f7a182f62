"""The in-process event hub: typed events to subscribers (SSE queues, in-process sinks), recent ones kept per source."""

from __future__ import annotations

import asyncio
import heapq
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

from .types import HubEvent

Sink = Callable[["Event"], None]


@dataclass(frozen=True, slots=True)
class Event:
    """One published event with its hub-wide id (ids increase across all sources)."""

    id: int
    payload: HubEvent

    @property
    def client_id(self) -> str:
        """The source the event concerns."""
        return self.payload.source_id

    def encode(self) -> bytes:
        """SSE wire form: id, event and data lines, then a blank line."""
        return f"id: {self.id}\nevent: {self.payload.kind}\ndata: {self.payload.data}\n\n".encode()


class Subscriber:
    """A bounded queue: when the reader is slow the oldest events are dropped and counted."""

    def __init__(self, client_id: str | None, size: int) -> None:
        self.client_id = client_id
        self._queue: deque[Event] = deque(maxlen=size)
        self._wakeup = asyncio.Event()
        self.dropped = 0
        self.closed = False

    def offer(self, event: Event) -> None:
        """Queue an event, dropping the oldest when full."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        self._wakeup.set()

    def close(self) -> None:
        """End the stream: `get` returns None once the queue is empty."""
        self.closed = True
        self._wakeup.set()

    @property
    def pending(self) -> int:
        """Events queued and not yet taken."""
        return len(self._queue)

    def take(self) -> Event | None:
        """The next queued event without waiting, or None."""
        return self._queue.popleft() if self._queue else None

    async def get(self, timeout: float) -> Event | None:
        """Next event; None on close; raises TimeoutError after `timeout` s without one."""
        while not self._queue:
            if self.closed:
                return None
            self._wakeup.clear()
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        return self._queue.popleft()


class EventHub:
    """Publishes events to subscribers of one client or of all clients, keeping recent ones per client."""

    def __init__(self, buffer_size: int, queue_size: int, max_clients: int = 1024) -> None:
        self.buffer_size = buffer_size
        self.queue_size = queue_size
        self.max_clients = max_clients
        self._seq = 0
        self._rings: OrderedDict[str, deque[Event]] = OrderedDict()
        # Newest id a ring (or a forgotten client's ring) lost: a resume after it has a real gap.
        self._lost: dict[str, int] = {}
        self._lost_any = 0
        self._subs: dict[str | None, set[Subscriber]] = {}
        self._sinks: list[Sink] = []
        self.closed = False

    @property
    def subscribers(self) -> int:
        """Connected SSE subscribers."""
        return sum(len(s) for s in self._subs.values())

    @property
    def dropped(self) -> int:
        """Events dropped for slow readers still connected."""
        return sum(sub.dropped for subs in self._subs.values() for sub in subs)

    def _ring(self, client_id: str) -> deque[Event]:
        ring = self._rings.get(client_id)
        if ring is None:
            ring = self._rings[client_id] = deque(maxlen=self.buffer_size)
            self._evict()
        else:
            self._rings.move_to_end(client_id)
        return ring

    def _evict(self) -> None:
        # Forget the least recently used clients nobody follows, so many past clients stay bounded.
        for client_id in list(self._rings):
            if len(self._rings) <= self.max_clients:
                break
            if not self._subs.get(client_id):
                ring = self._rings.pop(client_id)
                self._lost.pop(client_id, None)
                if ring:
                    self._lost_any = max(self._lost_any, ring[-1].id)

    def publish(self, payload: HubEvent) -> Event:
        """Record an event for its source and offer it to that source's subscribers, the all-sources ones and sinks."""
        self._seq += 1
        ev = Event(self._seq, payload)
        client_id = payload.source_id
        ring = self._ring(client_id)
        if len(ring) == ring.maxlen:
            self._lost[client_id] = self._lost_any = max(self._lost_any, ring[0].id)
        ring.append(ev)
        for key in (client_id, None):
            for sub in self._subs.get(key, ()):
                sub.offer(ev)
        for sink in self._sinks:
            sink(ev)
        return ev

    def add_sink(self, sink: Sink) -> Callable[[], None]:
        """Call `sink` (on the loop, must not block) with every event; returns a function that removes it."""
        self._sinks.append(sink)
        return lambda: self._sinks.remove(sink)

    def subscribe(self, client_id: str | None, last_id: int | None) -> Subscriber:
        """Register a subscriber; the buffered events after `last_id` are queued in it first, within its
        bound like live ones (a long backlog drops its oldest, counted), so replay has backpressure too."""
        sub = Subscriber(client_id, self.queue_size)
        if client_id is not None:
            self._ring(client_id)
        for ev in self._backlog(client_id, last_id):
            sub.offer(ev)
        if self.closed:
            sub.close()
        self._subs.setdefault(client_id, set()).add(sub)
        return sub

    def _backlog(self, client_id: str | None, last_id: int | None) -> list[Event]:
        if last_id is None:
            return []
        rings: Iterable[deque[Event]]
        rings = self._rings.values() if client_id is None else [self._rings[client_id]]
        # At most queue_size events per ring can survive the subscriber's bound: never copy more.
        tails = [_newest_after(ring, last_id, self.queue_size) for ring in rings]
        return list(heapq.merge(*tails, key=lambda e: e.id))[-self.queue_size :]

    def lost_after(self, client_id: str | None, last_id: int) -> int | None:
        """Newest id after `last_id` among events of this stream no longer buffered, or None (no gap)."""
        lost = self._lost_any if client_id is None else self._lost.get(client_id, 0)
        return lost if lost > last_id else None

    def oldest_id(self, client_id: str | None) -> int | None:
        """Oldest id still buffered (for the client, or for all)."""
        rings = self._rings.values() if client_id is None else [self._rings.get(client_id, deque())]
        firsts = [r[0].id for r in rings if r]
        return min(firsts) if firsts else None

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget a subscriber."""
        subs = self._subs.get(sub.client_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.client_id]

    def close(self) -> None:
        """End every stream (shutdown); later subscribers end at once."""
        self.closed = True
        for subs in self._subs.values():
            for sub in subs:
                sub.close()


def _newest_after(ring: deque[Event], last_id: int, limit: int) -> list[Event]:
    """The newest `limit` events of a ring with an id above `last_id`, oldest first."""
    found: list[Event] = []
    for ev in reversed(ring):
        if ev.id <= last_id or len(found) == limit:
            break
        found.append(ev)
    found.reverse()
    return found


EVENTS: web.AppKey[EventHub] = web.AppKey("events", EventHub)
