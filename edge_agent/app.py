"""create_app(config): the composition root. Each package's runtime object sits in one typed AppKey;
each long-lived part is one cleanup context, in the order the data flows."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from .appliance import attach_engine, setup_appliance
from .appliance.mqtt_host import mqtt_host
from .config import LoadedConfig
from .events import setup_events
from .events.api import setup_history
from .events.mqtt import setup_mqtt
from .guard import setup_guard
from .inference.engine import Engine
from .observability import OBSERVABILITY, Observability
from .runtime import AGENT, AgentRuntime
from .sources.setup import setup_sources
from .web import setup_viewer


async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
    """Compile and warm up the engine before serving; drain and stop it on shutdown."""
    agent = app[AGENT]
    engine = Engine(agent.config)
    attach_engine(app, engine)  # STATUS= and EXTEND_TIMEOUT_USEC for each compile attempt
    await engine.async_start()
    agent.engine_or_none = engine
    yield
    await agent.engine.async_stop()


def create_app(loaded: LoadedConfig) -> web.Application:
    """Build the application for one config."""
    cfg = loaded.config
    s = cfg.streaming
    app = web.Application(client_max_size=cfg.engine.max_frame_bytes + 4096)
    app[AGENT] = AgentRuntime(loaded)
    app[OBSERVABILITY] = Observability.create(s.max_sessions)
    setup_events(app, s.event_buffer, s.subscriber_queue, max_clients=max(64, 4 * s.max_sessions))
    app.cleanup_ctx.append(engine_ctx)
    setup_sources(app)
    setup_appliance(app)
    setup_viewer(app)
    setup_guard(app)
    setup_history(app)  # after the appliance: torn down (flushed) before it, after MQTT
    setup_mqtt(app, mqtt_host(app))
    return app
