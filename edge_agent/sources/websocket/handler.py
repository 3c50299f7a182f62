"""GET /stream/detection: the protocol 1 WebSocket handler."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time

from aiohttp import WSCloseCode, WSMsgType, web

from ...access import access_problem
from ...config import Config
from ...events import EVENTS
from ...observability import OBSERVABILITY
from ...runtime import AGENT
from ..base import Services
from ..registry import SOURCES
from ..replies import BadMessage, device_json, error_reply, model_json
from .protocol import BadBase64, ConfigMsg, FrameMsg, MessageTooLarge, PingMsg, parse_text
from .session import WebSocketSource

log = logging.getLogger(__name__)
CLIENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
TRY_AGAIN_LATER = 1013
# aiohttp closes the connection (1009) above this; below it, oversized input gets a protocol error.
HARD_LIMIT_FACTOR = 2


async def _refuse(
    ws: web.WebSocketResponse, app: web.Application, code: int, reason: str, label: str
) -> None:
    app[OBSERVABILITY].metrics.sessions_rejected.labels(reason=label).inc()
    await ws.close(code=code, message=reason.encode()[:120])


async def _admit(request: web.Request, ws: web.WebSocketResponse, cfg: Config) -> str | None:
    """Check access, shutdown, the session limit and client_id; return the client id or close and None."""
    app = request.app
    registry = app[SOURCES].registry
    problem = access_problem(request, cfg.server)
    if problem is not None:
        await _refuse(ws, app, WSCloseCode.POLICY_VIOLATION, problem[1], "unauthorized")
        return None
    if registry.closing:
        await _refuse(ws, app, WSCloseCode.GOING_AWAY, "server shutting down", "shutdown")
        return None
    registry.max_sessions = app[OBSERVABILITY].stats.max_sessions = (
        cfg.streaming.max_sessions
    )  # follows a reload
    if len(registry) >= registry.max_sessions:
        reason = f"server busy: {len(registry)} sessions open, the maximum; try again later"
        await _refuse(ws, app, TRY_AGAIN_LATER, reason, "max_sessions")
        return None
    client_id = request.query.get("client_id") or f"client-{secrets.token_hex(4)}"
    if not CLIENT_ID.fullmatch(client_id):
        await _refuse(
            ws, app, WSCloseCode.POLICY_VIOLATION, "client_id: 1-64 of A-Z a-z 0-9 . _ : @ -", "bad_client_id"
        )
        return None
    old = registry.by_client(client_id)
    if old is not None:
        await old.async_close(WSCloseCode.GOING_AWAY, b"replaced by a newer connection of this client_id")
    return client_id


def _writer_done(
    task: asyncio.Task[None], ws: web.WebSocketResponse, closers: set[asyncio.Task[None]]
) -> None:
    """A writer that dies of a bug must not leave its client waiting forever: close with 1011."""
    if task.cancelled() or task.exception() is None:
        return
    log.error("session writer failed", exc_info=task.exception())
    if not ws.closed:
        closer = asyncio.get_running_loop().create_task(
            _close(ws, WSCloseCode.INTERNAL_ERROR, "internal error")
        )
        closers.add(closer)
        closer.add_done_callback(closers.discard)


async def _close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    await ws.close(code=code, message=reason.encode())


async def stream_handler(request: web.Request) -> web.WebSocketResponse:
    """One WebSocket session: hello, then frames in and replies out until close or idle timeout."""
    app = request.app
    cfg = app[AGENT].config
    s = cfg.streaming
    # Per-message deflate is off: JPEG frames do not compress (see README, "Compression").
    ws = web.WebSocketResponse(
        compress=False, max_msg_size=HARD_LIMIT_FACTOR * max(cfg.engine.max_frame_bytes, s.max_text_bytes)
    )
    await ws.prepare(request)
    client_id = await _admit(request, ws, cfg)
    if client_id is None:
        return ws
    engine = app[AGENT].engine
    services = Services(app[SOURCES].scheduler, app[EVENTS], app[OBSERVABILITY])
    session = WebSocketSource(ws, secrets.token_hex(8), client_id, cfg, engine.model.labels, services)
    registry = app[SOURCES].registry
    registry.add(session)
    writer = asyncio.create_task(session.async_run_writer())
    closers: set[asyncio.Task[None]] = set()  # keeps a 1011 close task referenced while it runs
    writer.add_done_callback(lambda task: _writer_done(task, ws, closers))
    session.connected()
    reason = "connection lost"
    try:
        await session.async_control(session.hello(model_json(engine), device_json(engine)))
        reason = await _receive_loop(ws, session, cfg)
    finally:
        session.disconnected(reason)
        writer.cancel()
        registry.remove(session)
    return ws


async def _receive_loop(ws: web.WebSocketResponse, session: WebSocketSource, cfg: Config) -> str:
    """Read messages until the connection ends; return why it ended."""
    s = cfg.streaming
    while True:
        if not session.room.is_set():
            try:
                async with asyncio.timeout(s.session_timeout):
                    await session.room.wait()
            except TimeoutError:
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"client does not read replies")
                return "client does not read replies"
        try:
            msg = await ws.receive(timeout=s.session_timeout)
        except TimeoutError:
            reason = f"idle timeout: no message for {s.session_timeout:g} s"
            await ws.close(code=WSCloseCode.GOING_AWAY, message=reason.encode())
            return reason
        session.last_activity = time.monotonic()
        if msg.type == WSMsgType.BINARY:
            session.jpeg(msg.data, None, time.time())
        elif msg.type == WSMsgType.TEXT:
            await _on_text(session, msg.data, cfg)
        elif msg.type == WSMsgType.ERROR:
            return f"protocol error: {ws.exception()}"
        else:  # CLOSE, CLOSING, CLOSED
            return (
                "closed by client" if ws.close_code in (None, WSCloseCode.OK) else f"closed ({ws.close_code})"
            )


async def _on_text(session: WebSocketSource, text: str, cfg: Config) -> None:
    """Handle one text message; bad ones get a bad_message error and the session goes on."""
    try:
        if len(text) > cfg.streaming.max_text_bytes:
            raise MessageTooLarge(
                f"text message of {len(text)} bytes, the limit is {cfg.streaming.max_text_bytes}"
            )
        msg = parse_text(text, cfg.streaming.max_fps)
        if isinstance(msg, FrameMsg):
            session.jpeg(msg.image, msg.frame_id, msg.timestamp)
        elif isinstance(msg, ConfigMsg):
            await session.async_control(session.apply(msg))
        elif isinstance(msg, PingMsg):
            await session.async_control(
                {"type": "pong", "timestamp": msg.timestamp, "server_time": time.time()}
            )
    except BadBase64 as exc:
        session.answer(exc.frame_id, exc)  # a frame after all: numbered and answered in order
    except BadMessage as exc:
        await session.async_control(error_reply(None, exc))
