"""A WebSocket session as a Source: replies and control messages go to its socket."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from ...config import Config
from ...events import dumps
from ..base import Services, Source
from ..replies import resolve_classes
from .protocol import ConfigMsg


class WebSocketSource(Source):
    """One protocol-1 connection."""

    kind = "websocket"

    def __init__(
        self,
        ws: web.WebSocketResponse,
        session_id: str,
        client_id: str,
        config: Config,
        labels: tuple[str, ...],
        services: Services,
    ) -> None:
        super().__init__(client_id, session_id, config, labels, services)
        self.ws = ws

    def hello(self, engine_model: dict[str, Any], device: dict[str, Any]) -> dict[str, Any]:
        """The first message of a session."""
        return {
            "type": "session",
            "protocol": 1,
            "session_id": self.id,
            "client_id": self.client_id,
            "fps_limit": self.fps.limit,
            "max_fps": self._cfg.streaming.max_fps,
            "queue_size": self._cfg.streaming.queue_size,
            "model": engine_model,
            **device,
        }

    def apply(self, msg: ConfigMsg) -> dict[str, Any]:
        """Apply a config message; return the effective settings (raises BadMessage, applying nothing)."""
        classes = resolve_classes(msg.classes, self.labels) if msg.classes is not None else None
        return self.configure(
            confidence=msg.confidence,
            iou=msg.iou,
            classes=classes,
            clear_classes=msg.clear_classes,
            fps_limit=msg.fps_limit,
        )

    async def async_deliver(self, text: str) -> bool:
        """Send a frame's reply; False when the peer went away (the writer keeps draining)."""
        if self.ws.closed:
            return False
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def async_control(self, obj: dict[str, Any]) -> None:
        """Send a control message now."""
        if not self.ws.closed:
            await self.ws.send_str(dumps(obj))

    async def async_close(self, code: int, reason: bytes) -> None:
        """Close the socket with a code and reason."""
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code, message=reason)
