"""The open sources: admission limits, closing them all on shutdown, and the package's runtime object."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, web

from ..allocator import MemoryReturn
from ..events import EventHub
from ..observability import LiveStats, Metrics, SourceStats
from .base import Source
from .scheduler import Scheduler

SHUTDOWN_REASON = b"server shutting down"


class SessionRegistry:
    """Open sources by session id; `async_close_all` ends every WebSocket (1001) and SSE stream."""

    def __init__(
        self,
        max_sessions: int,
        hub: EventHub,
        metrics: Metrics,
        stats: LiveStats,
        memory: MemoryReturn | None = None,
    ) -> None:
        self.max_sessions = max_sessions
        self.memory = memory
        self.closing = False
        self._hub = hub
        self._metrics = metrics
        self._stats = stats
        self._sessions: dict[str, Source] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Source]:
        return iter(list(self._sessions.values()))

    def by_client(self, client_id: str) -> Source | None:
        """The open source of a client id, if any."""
        return next((s for s in self._sessions.values() if s.client_id == client_id), None)

    def add(self, session: Source) -> None:
        """Register an accepted source."""
        self._sessions[session.id] = session
        self._changed()
        self._metrics.sessions_total.inc()

    def remove(self, session: Source) -> None:
        """Forget a source that ended."""
        if self._sessions.pop(session.id, None) is not None:
            self._changed()
            if self.memory is not None:
                self.memory.soon()

    def _changed(self) -> None:
        self._stats.active_sessions = len(self._sessions)
        self._metrics.sessions_active.set(len(self._sessions))

    async def async_close_all(self, message: bytes = SHUTDOWN_REASON) -> None:
        """Refuse new sessions, close open WebSockets with 1001 and end SSE streams (idempotent)."""
        self.closing = True
        self._hub.close()
        await asyncio.gather(
            *(s.async_close(WSCloseCode.GOING_AWAY, message) for s in self._sessions.values())
        )


@dataclass
class Sources:
    """The sources package's runtime object: the shared scheduler and the open sources."""

    scheduler: Scheduler
    registry: SessionRegistry
    http_stats: SourceStats = field(default_factory=SourceStats)  # POST /v1/detect, counted as one source


SOURCES: web.AppKey[Sources] = web.AppKey("sources", Sources)
