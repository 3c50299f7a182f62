"""GET /stream/events[/{client_id}]: Server-Sent Events for dashboards following streams."""

from __future__ import annotations

from aiohttp import web

from ..access import access_problem, deny
from ..observability import OBSERVABILITY, Metrics
from ..runtime import AGENT
from .hub import EVENTS, EventHub, Subscriber

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-store",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


def _last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None  # a foreign id (another server): start from live events


async def events_handler(request: web.Request) -> web.StreamResponse:
    """Stream one client's events (or every client's), resuming after Last-Event-ID when given."""
    app = request.app
    cfg = app[AGENT].config
    problem = access_problem(request, cfg.server)
    if problem is not None:
        return deny(*problem)
    hub, metrics = app[EVENTS], app[OBSERVABILITY].metrics
    client_id = request.match_info.get("client_id")
    last_id = _last_event_id(request)
    resp = web.StreamResponse(headers=SSE_HEADERS)
    await resp.prepare(request)
    preamble = _preamble(hub, client_id, last_id)
    sub = hub.subscribe(client_id, last_id)
    metrics.sse_subscribers.inc()
    try:
        await resp.write(preamble)
        await _pump(resp, sub, metrics, cfg.streaming.keepalive_interval)
    except (ConnectionError, RuntimeError):
        pass  # the reader went away
    finally:
        hub.unsubscribe(sub)
        metrics.sse_subscribers.dec()
        app[AGENT].memory.soon()
    return resp


def _preamble(hub: EventHub, client_id: str | None, last_id: int | None) -> bytes:
    text = "retry: 2000\n\n"
    if last_id is None:
        return text.encode()
    lost = hub.lost_after(client_id, last_id)
    if lost is not None:
        text += f": events {last_id + 1}..{lost} are no longer buffered\n\n"
    return text.encode()


async def _pump(resp: web.StreamResponse, sub: Subscriber, metrics: Metrics, keepalive: float) -> None:
    reported = 0
    while True:
        try:
            ev = await sub.get(keepalive)
        except TimeoutError:
            await resp.write(b": keep-alive\n\n")
            continue
        if ev is None:
            return
        # Everything queued goes out in one write: a slow reader catches up in big chunks.
        chunk = [ev.encode()]
        while (more := sub.take()) is not None:
            chunk.append(more.encode())
        if sub.dropped > reported:
            chunk.append(f": dropped {sub.dropped - reported} events (slow reader)\n\n".encode())
            metrics.sse_dropped.inc(sub.dropped - reported)
            reported = sub.dropped
        await resp.write(b"".join(chunk))
