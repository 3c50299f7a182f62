"""TESTS ONLY: POST /debug/fault/stall makes every later inference hang (404 unless debug.fault_injection)."""

from __future__ import annotations

import logging

from aiohttp import web

from ..runtime import AGENT

log = logging.getLogger(__name__)


async def stall(request: web.Request) -> web.Response:
    """Inject an inference stall so the watchdog and health checks can be tested end to end."""
    if not request.app[AGENT].config.debug.fault_injection:
        raise web.HTTPNotFound()
    request.app[AGENT].engine.inject_stall()
    log.warning("fault injected over HTTP from %s: inference stalled", request.remote)
    return web.json_response({"fault": "stall", "injected": True})


def add_fault_routes(app: web.Application) -> None:
    """Register the fault-injection route (it answers 404 while debug.fault_injection is off)."""
    app.router.add_post("/debug/fault/stall", stall)
