"""MQTT: hazard events (store-and-forward), retained state, detection summaries, health and HA discovery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ...observability import OBSERVABILITY
from ...runtime import AGENT
from ..history import HISTORY
from ..hub import EVENTS
from .publisher import Publisher
from .service import MqttCollector, MqttHost, MqttService

__all__ = ["MQTT", "MqttHost", "MqttService", "mqtt_checks", "setup_mqtt"]

log = logging.getLogger(__name__)
STOP_TIMEOUT = 5.0

MQTT: web.AppKey[MqttService] = web.AppKey("mqtt", MqttService)


async def mqtt_ctx(app: web.Application) -> AsyncIterator[None]:
    """Run the outbox writer and the publisher for the app's lifetime; a clean stop says offline."""
    svc = app[MQTT]
    remove = app[EVENTS].add_sink(svc.sink)
    if svc.cfg.enabled:
        try:
            await svc.disk.run(svc.open)
        except Exception as exc:
            log.error("MQTT: cannot open the outbox %s: %s", svc.outbox.path, exc)
            svc.last_error = f"outbox: {exc}"
    writer = asyncio.create_task(svc.run_writer(), name="mqtt-outbox")
    publisher = asyncio.create_task(Publisher(svc).run(), name="mqtt-publisher")
    yield
    remove()
    await svc.async_store()
    svc.stop()
    try:
        await asyncio.wait_for(asyncio.shield(publisher), STOP_TIMEOUT)
    except TimeoutError:
        log.warning("MQTT: did not disconnect within %.0fs", STOP_TIMEOUT)
    for task in (publisher, writer):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if svc.opened:
        await svc.disk.run(svc.outbox.close)


def setup_mqtt(app: web.Application, host: MqttHost) -> MqttService:
    """Register the MQTT service, its metrics and its cleanup context (after the history's)."""
    agent = app[AGENT]
    svc = app[MQTT] = MqttService(lambda: agent.config, host, app[HISTORY])
    app[OBSERVABILITY].metrics.registry.register(MqttCollector(svc))
    app.cleanup_ctx.append(mqtt_ctx)
    return svc


def mqtt_checks(app: web.Application) -> dict[str, list[dict[str, Any]]]:
    """/healthz: broker connection and the outbox (warn while disconnected or once messages were dropped)."""
    svc = app.get(MQTT)
    if svc is None or not (svc.cfg.enabled or svc.outbox.dropped):
        return {}
    problems = []
    if not svc.connected:
        problems.append(
            f"not connected to {svc.cfg.host}:{svc.cfg.port}"
            + (f" ({svc.last_error})" if svc.last_error else "")
        )
    if svc.outbox.dropped:
        problems.append(f"{svc.outbox.dropped} hazard messages dropped past the outbox bound")
    entry: dict[str, Any] = {
        "status": "warn" if problems else "pass",
        "observedValue": svc.outbox.count,
        "observedUnit": "messages",
        "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "componentType": "component",
        "connected": svc.connected,
        "outboxBytes": svc.outbox.bytes,
        "dropped": svc.outbox.dropped,
        "published": svc.published,
    }
    if problems:
        entry["output"] = "; ".join(problems)
    return {"mqtt:broker": [entry]}
