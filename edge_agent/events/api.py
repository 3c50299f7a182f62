"""GET /v1/events (recent hazard events, paged, filtered) and GET /v1/events/{id}/snapshot.jpg."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator

from aiohttp import web

from ..access import access_problem, deny
from ..runtime import AGENT
from .disk import DiskWorker
from .history import HISTORY, HazardHistory
from .hub import EVENTS
from .snapshots import SNAPSHOT_ID

log = logging.getLogger(__name__)

MAX_LIMIT = 200
MAX_NAME = 128


def _bad(message: str) -> web.Response:
    return web.json_response({"error": {"code": "bad_request", "message": message}}, status=400)


def _query(request: web.Request) -> tuple[str | None, str | None, int | None, int] | str:
    """(source, rule, before, limit) from the query, or the reason it is invalid."""
    q = request.query
    source, rule = q.get("source"), q.get("rule")
    if any(v is not None and not 0 < len(v) <= MAX_NAME for v in (source, rule)):
        return f"source and rule are 1-{MAX_NAME} characters"
    try:
        limit = int(q.get("limit", "50"))
        before = int(q["before"]) if "before" in q else None
    except ValueError:
        return "limit and before are integers"
    if not 1 <= limit <= MAX_LIMIT:
        return f"limit is 1-{MAX_LIMIT}"
    return source, rule, before, limit


async def events_list(request: web.Request) -> web.Response:
    """Recent hazard events, newest first: ?source=&rule=&limit=&before=<next cursor>."""
    problem = access_problem(request, request.app[AGENT].config.server)
    if problem is not None:
        return deny(*problem)
    parsed = _query(request)
    if isinstance(parsed, str):
        return _bad(parsed)
    page = await request.app[HISTORY].async_page(*parsed)
    return web.json_response(
        {"events": page.events, "next": page.next}, headers={"Cache-Control": "no-store"}
    )


async def snapshot_jpg(request: web.Request) -> web.Response:
    """The JPEG saved when a hazard started, boxes drawn."""
    problem = access_problem(request, request.app[AGENT].config.server)
    if problem is not None:
        return deny(*problem)
    snapshot_id = request.match_info["id"]
    if not SNAPSHOT_ID.fullmatch(snapshot_id):
        return _bad("a snapshot id is 16 hex digits")
    data = await request.app[HISTORY].async_snapshot(snapshot_id)
    if data is None:
        body = {
            "error": {"code": "not_found", "message": f"no snapshot {snapshot_id} (never saved or removed)"}
        }
        return web.json_response(body, status=404)
    return web.Response(
        body=data, content_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"}
    )


async def history_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the history, feed it from the hub while the app runs; flush and close on the way out."""
    history = app[HISTORY]
    try:
        await history.async_open()
    except (OSError, sqlite3.Error) as exc:  # detection still works without a usable state directory
        log.error("hazard history disabled: cannot open %s: %s", history.db_path.parent, exc)
        history.last_error = str(exc)
        yield
        await asyncio.to_thread(history.close_workers)
        return
    remove = app[EVENTS].add_sink(history.sink)
    task = asyncio.create_task(history.run(), name="hazard-history")
    yield
    remove()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await history.async_flush()
    await history.disk.run(history.close)
    await asyncio.to_thread(history.close_workers)


def setup_history(app: web.Application) -> HazardHistory:
    """Register the hazard history, its routes and its cleanup context."""
    history = app[HISTORY] = HazardHistory(
        app[AGENT].config.events, DiskWorker("db"), DiskWorker("snapshots")
    )
    app.router.add_get("/v1/events", events_list)
    app.router.add_get("/v1/events/{id}/snapshot.jpg", snapshot_jpg)
    app.cleanup_ctx.append(history_ctx)
    return history
