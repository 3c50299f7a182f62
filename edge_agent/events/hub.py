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
                del self._rings[client_id]

    def publish(self, payload: HubEvent) -> Event:
        """Record an event for its source and offer it to that source's subscribers, the all-sources ones and sinks."""
        self._seq += 1
        ev = Event(self._seq, payload)
        client_id = payload.source_id
        self._ring(client_id).append(ev)
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

    def subscribe(self, client_id: str | None, last_id: int | None) -> tuple[Subscriber, list[Event]]:
        """Register a subscriber and return the buffered events after `last_id` (none if None)."""
        sub = Subscriber(client_id, self.queue_size)
        if self.closed:
            sub.close()
        self._subs.setdefault(client_id, set()).add(sub)
        if client_id is not None:
            self._ring(client_id)
        return sub, self._backlog(client_id, last_id)

    def _backlog(self, client_id: str | None, last_id: int | None) -> list[Event]:
        if last_id is None:
            return []
        rings: Iterable[deque[Event]]
        rings = self._rings.values() if client_id is None else [self._rings[client_id]]
        return [e for e in heapq.merge(*rings, key=lambda e: e.id) if e.id > last_id]

    def oldest_id(self, client_id: str | None) -> int | None:
        """Oldest id still buffered (for the client, or for all), to tell a resumer what was lost."""
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


EVENTS: web.AppKey[EventHub] = web.AppKey("events", EventHub)
