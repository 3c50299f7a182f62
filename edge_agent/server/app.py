"""create_app(config): builds the aiohttp application; long-lived parts are cleanup contexts."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..config import LoadedConfig
from ..engine import Engine
from .keys import CONFIG_KEY, ENGINE_KEY


async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
    """Compile and warm up the engine before serving; drain and stop it on shutdown."""
    engine = Engine(app[CONFIG_KEY].config)
    await engine.async_start()
    app[ENGINE_KEY] = engine
    yield
    await engine.async_stop()


def create_app(loaded: LoadedConfig, engine_ctx_override: object | None = None) -> web.Application:
    """Build the application for one config."""
    cfg = loaded.config
    app = web.Application(client_max_size=cfg.engine.max_frame_bytes + 4096)
    app[CONFIG_KEY] = loaded
    app.cleanup_ctx.append(engine_ctx)  # type: ignore[arg-type]
    return app
