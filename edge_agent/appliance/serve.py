"""Serving with a bounded drain: bind before the compile, keep the listener for readiness probes while stopping.

aiohttp's run_app closes the listening socket first on SIGTERM and then gives every phase its own
shutdown_timeout (handlers, then cancelled handlers, then cleanup): readiness probes were refused at once
and a stalled engine made shutdown take three times the timeout. Here one deadline covers everything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..errors import ListenError
from ..sources.registry import SOURCES
from .runtime import APPLIANCE

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Part of server.shutdown_timeout kept for closing connections, stopping the engine and the mDNS goodbye.
CLEANUP_SHARE, CLEANUP_MAX_S = 0.3, 3.0
# Past the deadline by this much, the process exits even if something hangs (systemd would SIGKILL it).
HARD_EXIT_GRACE_S = 1.0


def bind_sockets(host: str, port: int) -> list[socket.socket]:
    """Bind (not yet listen) every address of host:port, so a busy port or a foreign address fails at once."""
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {where}: {exc.strerror}") from None
    socks: list[socket.socket] = []
    try:
        for family, kind, proto, _, addr in dict.fromkeys((i[0], i[1], i[2], "", i[4]) for i in infos):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(socks) > 1:  # any free port: the same one on every address
                sock.bind((addr[0], socks[0].getsockname()[1], *addr[2:]))
            else:
                sock.bind(addr)
    except OSError as exc:
        for sock in socks:
            sock.close()
        raise ListenError(f"cannot listen on {where}: {exc.strerror or exc}") from None
    return socks


class _Runner(web.AppRunner):
    """An AppRunner whose on_shutdown hooks run once: at the start of the drain, not again in cleanup."""

    _shut = False

    async def shutdown(self) -> None:
        if not self._shut:
            self._shut = True
            await super().shutdown()


async def _first(*aws: asyncio.Future[object] | asyncio.Task[object]) -> None:
    await asyncio.wait(aws, return_when=asyncio.FIRST_COMPLETED)


async def async_serve(
    app: web.Application,
    socks: list[socket.socket],
    timeout: float,
    ready: Callable[[str], None],
    keepalive_timeout: float = 75.0,
) -> None:
    """Start (compile), listen, serve until SIGTERM/SIGINT, then drain and stop within `timeout` seconds."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = _Runner(
        app, access_log=None, handle_signals=False, shutdown_timeout=0.5, keepalive_timeout=keepalive_timeout
    )
    stopped = asyncio.ensure_future(stop.wait())
    try:
        setup = asyncio.ensure_future(runner.setup())
        await _first(setup, stopped)
        if not setup.done():  # stopped while compiling: abandon start-up
            setup.cancel()
        await setup
        sites = [web.SockSite(runner, sock) for sock in socks]
        for site in sites:
            await site.start()
        ready(f"======== Running on {', '.join(s.name for s in sites)} ========\n(Press CTRL+C to quit)")
        await stopped
        await _drain(app, runner, loop.time() + timeout)
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
    finally:
        stopped.cancel()
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _drain(app: web.Application, runner: _Runner, deadline: float) -> None:
    """Listener open (readiness answers 503): end streams, let inference and requests finish until the deadline."""
    loop = asyncio.get_running_loop()
    life = app[APPLIANCE].lifecycle
    life.stop_deadline = deadline
    _arm_hard_exit(deadline - loop.time() + HARD_EXIT_GRACE_S)
    drain_by = deadline - min(CLEANUP_MAX_S, CLEANUP_SHARE * (deadline - loop.time()))
    try:  # STOPPING=1, WebSockets closed 1001, SSE streams ended; a peer cannot stretch this
        async with asyncio.timeout_at(drain_by):
            await runner.shutdown()
    except TimeoutError:
        log.warning("shutdown: closing the streams took until the drain deadline")
    # Frames still in inference get until drain_by; then waiting requests are answered 503.
    await app[SOURCES].scheduler.async_drain(max(0.0, drain_by - loop.time()))
    while life.requests_in_flight and loop.time() < drain_by:
        life.drained.clear()
        try:
            async with asyncio.timeout(drain_by - loop.time()):
                await life.drained.wait()
        except TimeoutError:
            break
    if life.requests_in_flight:
        log.warning("shutdown: %d requests still open at the deadline; closing them", life.requests_in_flight)


def _arm_hard_exit(seconds: float) -> None:
    """Last resort: a cleanup step that hangs (a stuck device driver) must not outlive the deadline."""

    def fire() -> None:
        log.error("shutdown did not finish within server.shutdown_timeout; exiting now")
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(max(0.0, seconds), fire)
    timer.daemon = True
    timer.start()


def engine_stop_budget(app: web.Application, default: float = 10.0) -> float:
    """Seconds the engine may wait for in-flight inference when it stops: what is left of the deadline."""
    deadline = app[APPLIANCE].lifecycle.stop_deadline
    if deadline is None:
        return default
    return max(0.1, deadline - asyncio.get_running_loop().time() - 0.5)


# Answered while stopping; everything else gets 503 so that new work cannot stretch the drain.
PROBE_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})


@web.middleware
async def drain_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count open requests (streams included) for the drain; refuse new work once stopping."""
    if request.path in PROBE_PATHS:
        return await handler(request)
    life = request.app[APPLIANCE].lifecycle
    if life.stopping.is_set():
        return web.json_response(
            {"error": {"code": "stopping", "message": "the service is shutting down"}},
            status=503,
            headers={"Connection": "close", "Retry-After": "5"},
        )
    life.requests_in_flight += 1
    try:
        return await handler(request)
    finally:
        life.requests_in_flight -= 1
        if not life.requests_in_flight:
            life.drained.set()
