"""The open WebSocket sessions: admission limits and closing them all on shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiohttp import WSCloseCode

from .events import EventHub
from .metrics import StreamMetrics
from .session import Session
from .stats import LiveStats

SHUTDOWN_REASON = b"server shutting down"


class SessionRegistry:
    """Open sessions by id; `async_close_all` ends every WebSocket (1001) and SSE stream."""

    def __init__(self, max_sessions: int, hub: EventHub, metrics: StreamMetrics, stats: LiveStats) -> None:
        self.max_sessions = max_sessions
        self.closing = False
        self._hub = hub
        self._metrics = metrics
        self._stats = stats
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    def by_client(self, client_id: str) -> Session | None:
        """The open session of a client id, if any."""
        return next((s for s in self._sessions.values() if s.client_id == client_id), None)

    def add(self, session: Session) -> None:
        """Register an accepted session."""
        self._sessions[session.id] = session
        self._changed()
        self._metrics.sessions_total.inc()

    def remove(self, session: Session) -> None:
        """Forget a session that ended."""
        if self._sessions.pop(session.id, None) is not None:
            self._changed()

    def _changed(self) -> None:
        self._stats.active_sessions = len(self._sessions)
        self._metrics.sessions_active.set(len(self._sessions))

    async def async_close_all(self, message: bytes = SHUTDOWN_REASON) -> None:
        """Refuse new sessions, close open WebSockets with 1001 and end SSE streams (idempotent)."""
        self.closing = True
        self._hub.close()
        await asyncio.gather(
            *(s.ws.close(code=WSCloseCode.GOING_AWAY, message=message) for s in self._sessions.values()),
            return_exceptions=True,
        )
