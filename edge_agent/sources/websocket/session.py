"""A WebSocket session as a Source: replies and control messages go to its socket."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiohttp import WSCloseCode, web

from ...config import Config
from ...events import dumps
from ..base import Services, Source
from ..replies import resolve_classes
from .protocol import ConfigMsg

# A close never waits on the peer longer than this: then the connection is aborted.
CLOSE_DEADLINE = 2.0


class LimitedWebSocket(web.WebSocketResponse):
    """A WebSocketResponse whose 1009 close carries a reason and reaches the peer.

    aiohttp answers an oversized message with a bare 1009 and closes the socket at once; the peer is
    still sending the rest of the message, so the kernel resets the connection and the close frame is
    lost ("connection lost"). Here the close frame says why, then input is discarded (aiohttp's parser
    ignores everything after its error) until the peer closes or CLOSE_DEADLINE passes.
    """

    def __init__(self, *, too_big_reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.too_big_reason = too_big_reason.encode()[:120]
        self.transport: asyncio.Transport | None = None

    async def prepare(self, request: web.BaseRequest) -> Any:
        """Upgrade, keeping the transport so closes can be bounded in time."""
        writer = await super().prepare(request)
        self.transport = request.transport
        return writer

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        """Close; an oversized-message close lingers so the peer reads the 1009 and its reason."""
        # aiohttp internals (_writer, _set_closed, _close_code): tests/sources/test_hostile.py covers them.
        if code != WSCloseCode.MESSAGE_TOO_BIG or self.closed or self._writer is None:
            return await super().close(code=code, message=message, drain=drain)
        self._set_closed()
        self._close_code = WSCloseCode.MESSAGE_TOO_BIG
        transport = self.transport
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            async with asyncio.timeout(CLOSE_DEADLINE):
                await self._writer.close(code, message or self.too_big_reason)
                if transport is not None and transport.can_write_eof():
                    transport.write_eof()
                while transport is not None and not transport.is_closing():
                    await asyncio.sleep(0.05)  # the peer's FIN closes it; no event to wait on here
        if transport is not None:
            transport.abort()
        return True


async def close_bounded(ws: LimitedWebSocket, code: int, reason: bytes) -> None:
    """Close with a code and reason; a peer that does not read cannot hold us: abort after the deadline."""
    try:
        async with asyncio.timeout(CLOSE_DEADLINE):
            await ws.close(code=code, message=reason[:120])
    except (TimeoutError, ConnectionError, RuntimeError):
        if ws.transport is not None:
            ws.transport.abort()


class WebSocketSource(Source):
    """One protocol-1 connection."""

    kind = "websocket"

    def __init__(
        self,
        ws: LimitedWebSocket,
        peer: str,
        session_id: str,
        client_id: str,
        config: Config,
        labels: tuple[str, ...],
        services: Services,
    ) -> None:
        super().__init__(client_id, session_id, config, labels, services)
        self.ws = ws
        self.peer = peer
        self.connected_at = time.monotonic()

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
        if self.ws.closed:
            return
        try:
            async with asyncio.timeout(self._cfg.streaming.session_timeout):
                await self.ws.send_str(dumps(obj))
        except TimeoutError:
            await close_bounded(self.ws, WSCloseCode.POLICY_VIOLATION, b"client does not read replies")
        except (ConnectionError, RuntimeError):
            pass  # the peer went away; the receive loop sees it

    async def async_close(self, code: int, reason: bytes) -> None:
        """Close the socket with a code and reason, never waiting on the peer past CLOSE_DEADLINE."""
        await close_bounded(self.ws, code, reason)
