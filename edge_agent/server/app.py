"""create_app(config): builds the aiohttp application; long-lived parts are cleanup contexts."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..appliance import attach_engine, setup_appliance
from ..config import LoadedConfig
from ..engine import Engine
from ..web import setup_viewer
from .keys import CONFIG_KEY, ENGINE_KEY, Ref
from .streaming import setup_streaming


async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
    """Compile and warm up the engine before serving; drain and stop it on shutdown."""
    engine = Engine(app[CONFIG_KEY].value.config)
    attach_engine(app, engine)  # STATUS= and EXTEND_TIMEOUT_USEC for each compile attempt
    await engine.async_start()
    app[ENGINE_KEY] = Ref(engine)
    yield
    await app[ENGINE_KEY].value.async_stop()


def create_app(loaded: LoadedConfig) -> web.Application:
    """Build the application for one config."""
    cfg = loaded.config
    app = web.Application(client_max_size=cfg.engine.max_frame_bytes + 4096)
    app[CONFIG_KEY] = Ref(loaded)
    app.cleanup_ctx.append(engine_ctx)
    setup_streaming(app)  # before the appliance: it reads METRICS_KEY / STATS_KEY
    setup_appliance(app)
    setup_viewer(app)
    return app
