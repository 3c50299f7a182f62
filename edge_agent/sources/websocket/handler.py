"""GET /stream/detection: the protocol 1 WebSocket handler.

Admission, in order: a malformed client_id is refused at the handshake (400); then, after the upgrade so
that browsers see a reason, access (1008), shutdown (1001), and either the replacement of this client_id's
old session or the limits: server.max_sessions_per_peer and streaming.max_sessions (1013).

Replacing a session: a new connection takes over its client_id's open session when it holds the token (with
a token configured every client is authenticated), comes from the same peer address, or the old session has
been silent for server.first_frame_timeout (half-open). Otherwise it is refused (1008, "in use"): an anonymous
peer elsewhere on the LAN cannot kick a live camera off. A replacement does not count against the limits.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time

from aiohttp import WSCloseCode, WSMsgType, web

from ...access import access_problem, peer_address
from ...config import Config
from ...events import EVENTS
from ...observability import OBSERVABILITY
from ...runtime import AGENT
from ..base import Services, Source
from ..registry import SOURCES, SessionRegistry
from ..replies import BadMessage, device_json, error_reply, model_json
from .protocol import BadBase64, ConfigMsg, FrameMsg, MessageTooLarge, PingMsg, parse_text
from .session import CLOSE_DEADLINE, LimitedWebSocket, WebSocketSource, close_bounded

log = logging.getLogger(__name__)
CLIENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")
TRY_AGAIN_LATER = 1013
# aiohttp closes the connection (1009) above this; below it, oversized input gets a protocol error.
HARD_LIMIT_FACTOR = 2


def _rejected(app: web.Application, label: str) -> None:
    app[OBSERVABILITY].metrics.sessions_rejected.labels(reason=label).inc()


async def _refuse(ws: LimitedWebSocket, app: web.Application, code: int, reason: str, label: str) -> None:
    _rejected(app, label)
    await close_bounded(ws, code, reason.encode("utf-8", "replace"))


def _may_replace(old: Source, peer: str, cfg: Config) -> bool:
    """See the module docstring: token holders, the same address, or a silent (half-open) old session.
    Only WebSocket sessions are replaced: a source the server runs itself (a camera) never is."""
    if not isinstance(old, WebSocketSource):
        return False
    if cfg.server.auth_token is not None or old.peer == peer:
        return True
    return time.monotonic() - old.last_activity > cfg.server.first_frame_timeout


def _limit_problem(registry: SessionRegistry, peer: str, cfg: Config) -> str | None:
    if len(registry) >= registry.max_sessions:
        return f"server busy: {len(registry)} sessions open, the maximum; try again later"
    mine = sum(1 for s in registry if isinstance(s, WebSocketSource) and s.peer == peer)
    if mine >= cfg.server.max_sessions_per_peer:
        return f"too many sessions from {peer}: {mine} open, the maximum per address; try again later"
    return None


async def _admit(request: web.Request, ws: LimitedWebSocket, cfg: Config, client_id: str, peer: str) -> bool:
    """Check access, shutdown, replacement and the limits; close the socket and return False if refused."""
    app = request.app
    registry = app[SOURCES].registry
    problem = access_problem(request, cfg.server)
    if problem is not None:
        await _refuse(ws, app, WSCloseCode.POLICY_VIOLATION, problem[1], "unauthorized")
        return False
    if registry.closing:
        await _refuse(ws, app, WSCloseCode.GOING_AWAY, "server shutting down", "shutdown")
        return False
    registry.max_sessions = app[OBSERVABILITY].stats.max_sessions = (
        cfg.streaming.max_sessions
    )  # follows a reload
    old = registry.by_client(client_id)
    if old is not None:
        if not _may_replace(old, peer, cfg):
            reason = f"client_id {client_id} is in use by a live session from another address"
            await _refuse(ws, app, WSCloseCode.POLICY_VIOLATION, reason, "client_id_in_use")
            return False
        await old.async_close(WSCloseCode.GOING_AWAY, b"replaced by a newer connection of this client_id")
        return True
    limit = _limit_problem(registry, peer, cfg)
    if limit is not None:
        await _refuse(ws, app, TRY_AGAIN_LATER, limit, "max_sessions")
        return False
    return True


def _writer_done(task: asyncio.Task[None], ws: LimitedWebSocket, closers: set[asyncio.Task[None]]) -> None:
    """A writer that dies of a bug must not leave its client waiting forever: close with 1011."""
    if task.cancelled() or task.exception() is None:
        return
    log.error("session writer failed", exc_info=task.exception())
    if not ws.closed:
        closer = asyncio.get_running_loop().create_task(
            close_bounded(ws, WSCloseCode.INTERNAL_ERROR, b"internal error")
        )
        closers.add(closer)
        closer.add_done_callback(closers.discard)


def _bad_client_id(app: web.Application) -> web.Response:
    _rejected(app, "bad_client_id")
    message = "client_id: 1-64 of A-Z a-z 0-9 . _ : @ -"
    return web.json_response({"error": {"code": "bad_client_id", "message": message}}, status=400)


def _websocket(cfg: Config) -> LimitedWebSocket:
    limit = HARD_LIMIT_FACTOR * max(cfg.engine.max_frame_bytes, cfg.streaming.max_text_bytes)
    reason = f"message too big: the limit is {limit} bytes (frames: {cfg.engine.max_frame_bytes})"
    # Per-message deflate is off: JPEG frames do not compress (see README, "Compression").
    return LimitedWebSocket(too_big_reason=reason, compress=False, max_msg_size=limit)


async def stream_handler(request: web.Request) -> web.StreamResponse:
    """One WebSocket session: hello, then frames in and replies out until close or a timeout."""
    app = request.app
    cfg = app[AGENT].config
    client_id = request.query.get("client_id") or f"client-{secrets.token_hex(4)}"
    if not CLIENT_ID.fullmatch(client_id):
        return _bad_client_id(app)
    ws = _websocket(cfg)
    await ws.prepare(request)
    peer = peer_address(request)
    if not await _admit(request, ws, cfg, client_id, peer):
        return ws
    engine = app[AGENT].engine
    services = Services(app[SOURCES].scheduler, app[EVENTS], app[OBSERVABILITY])
    session = WebSocketSource(ws, peer, secrets.token_hex(8), client_id, cfg, engine.model.labels, services)
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
        _finish(session, writer, reason, registry)
    return ws


def _finish(
    session: WebSocketSource, writer: asyncio.Task[None], reason: str, registry: SessionRegistry
) -> None:
    """Let the writer answer (and record) what already has an outcome, then announce the end.

    Synchronous on purpose: aiohttp may cancel the handler when the peer goes; the writer's done
    callback announces `disconnected` with counts that include every reply sent.
    """
    session.services.scheduler.cancel_owner(session)
    session.close_outbox()

    def done(_: asyncio.Task[None]) -> None:
        session.disconnected(reason)
        registry.remove(session)

    writer.add_done_callback(done)
    asyncio.get_running_loop().call_later(CLOSE_DEADLINE, writer.cancel)


def _receive_timeout(session: WebSocketSource, cfg: Config) -> tuple[float, int, str]:
    """How long to wait for the next message, and the close code and reason if none comes."""
    s = cfg.streaming
    if session.stats.received == 0:
        left = session.connected_at + cfg.server.first_frame_timeout - time.monotonic()
        if left < s.session_timeout:
            why = f"no frame within {cfg.server.first_frame_timeout:g} s of connecting"
            return max(0.001, left), WSCloseCode.POLICY_VIOLATION, why
    return s.session_timeout, WSCloseCode.GOING_AWAY, f"idle timeout: no message for {s.session_timeout:g} s"


async def _receive_loop(ws: LimitedWebSocket, session: WebSocketSource, cfg: Config) -> str:
    """Read messages until the connection ends; return why it ended."""
    s = cfg.streaming
    while True:
        if not session.room.is_set():
            try:
                async with asyncio.timeout(s.session_timeout):
                    await session.room.wait()
            except TimeoutError:
                await close_bounded(ws, WSCloseCode.POLICY_VIOLATION, b"client does not read replies")
                return "client does not read replies"
        timeout, code, why = _receive_timeout(session, cfg)
        try:
            msg = await ws.receive(timeout=timeout)
        except TimeoutError:
            await close_bounded(ws, code, why.encode())
            return why
        session.last_activity = time.monotonic()
        if msg.type == WSMsgType.BINARY:
            session.jpeg(msg.data, None, time.time())
        elif msg.type == WSMsgType.TEXT:
            await _on_text(session, msg.data, cfg)
        elif msg.type == WSMsgType.ERROR:
            return f"protocol error: {ws.exception() or msg.data}"
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
