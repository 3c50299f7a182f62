"""SIGHUP: reload the config from the same file; swap in a new engine beside the old without dropping sessions."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..config import Config, LoadedConfig, load_config
from ..errors import ConfigError, EdgeAgentError
from ..events.mqtt import MQTT
from ..inference.engine import Engine
from ..runtime import AGENT
from ..sources.cameras import async_reload_cameras
from .checks import report_config
from .lifecycle import attach_engine
from .runtime import APPLIANCE
from .status import status_line
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

# Sections the running engine captured at construction: changing them needs a new engine.
ENGINE_SECTIONS = ("model", "engine", "detection")
# Settings only a restart can apply (the listening socket exists already).
RESTART_ONLY = (("server", "host"), ("server", "port"))


def cli_overrides(loaded: LoadedConfig) -> dict[tuple[str, ...], Any]:
    """The command-line values of the running config, so a reload keeps --host/--port and friends."""
    dumped = loaded.config.model_dump()
    found: dict[tuple[str, ...], Any] = {}
    for key, source in loaded.sources.items():
        if source == "command line":
            node: Any = dumped
            for part in key.split("."):
                node = node[part]
            found[tuple(key.split("."))] = node
    return found


def needs_new_engine(old: Config, new: Config) -> bool:
    """True when model, engine or detection settings differ."""
    return any(getattr(old, s) != getattr(new, s) for s in ENGINE_SECTIONS)


async def _start_engine(app: web.Application, config: Config) -> Engine | None:
    engine = Engine(config)
    attach_engine(app, engine)
    try:
        await engine.async_start()
    except EdgeAgentError as exc:
        log.error("reload rejected: the new engine did not start: %s", exc)
        await engine.async_stop()
        return None
    except asyncio.CancelledError:
        await engine.async_stop()
        raise
    return engine


async def reload_config(app: web.Application) -> bool:
    """Load, validate and apply the config file again; on any error keep the running config and engine.

    Whatever goes wrong, the reload ends with READY=1 (systemctl reload waits for it) and a /healthz note."""
    app[APPLIANCE].notifier.reloading()
    log.info("SIGHUP: reloading configuration from %s", app[AGENT].loaded.path or "environment")
    try:
        error = await _apply(app)
    except asyncio.CancelledError:
        _finish(app, error="cancelled by shutdown")
        raise
    except Exception as exc:  # a reload bug must never leave systemd waiting or the service without config
        log.error(
            "reload failed unexpectedly, keeping the running configuration: %s: %s", type(exc).__name__, exc
        )
        error = f"{type(exc).__name__}: {exc}"
    return _finish(app, error)


async def _apply(app: web.Application) -> str | None:
    """The reload itself; returns why it was rejected, or None once the new config is in force."""
    old = app[AGENT].loaded
    try:
        new = await asyncio.to_thread(load_config, old.path, dict(os.environ), cli_overrides(old))
    except ConfigError as exc:
        log.error("reload rejected, keeping the running configuration: %s", exc)
        return str(exc)
    for section, key in RESTART_ONLY:
        if getattr(getattr(old.config, section), key) != getattr(getattr(new.config, section), key):
            log.warning("reload: %s.%s changed; it takes effect after a restart", section, key)
    if needs_new_engine(old.config, new.config):
        engine = await _start_engine(app, new.config)
        if engine is None:
            return "new engine failed to start"
        retired = app[AGENT].engine
        app[AGENT].engine_or_none = engine
        app[AGENT].loaded = new
        log.info("reload: now serving model %s (%s)", engine.model.name, engine.device)
        # Shielded: a shutdown arriving now must not leave the retired engine's threads behind.
        await asyncio.shield(retired.async_stop())
    else:
        app[AGENT].loaded = new
    await async_reload_cameras(app)
    app[APPLIANCE].lifecycle.reloads += 1
    if MQTT in app:
        app[MQTT].reconfigure()  # reconnects only when [mqtt] changed; the streams are not touched
        for camera in {c.id for c in old.config.cameras} - {c.id for c in new.config.cameras if c.enabled}:
            app[MQTT].forget(camera, "camera removed by reload")  # its Home Assistant entities go too
    report_config(app)
    return None


def _finish(app: web.Application, error: str | None) -> bool:
    life = app[APPLIANCE].lifecycle
    life.last_reload_error = error
    life.changed.set()
    suffix = f" (last reload failed: {error})" if error else ""
    app[APPLIANCE].notifier.ready(status_line(app) + suffix)
    return error is None


class Reloader:
    """Coalesces SIGHUPs: one reload at a time, and one more if a signal arrived meanwhile."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._task: asyncio.Task[None] | None = None
        self._again = False

    def request(self) -> None:
        """Signal handler: start a reload, or queue one behind the running one."""
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.create_task(self._run(), name="config-reload")

    async def _run(self) -> None:
        while True:
            self._again = False
            await reload_config(self._app)
            if not self._again or self._app[APPLIANCE].lifecycle.stopping.is_set():
                return

    async def close(self) -> None:
        """Cancel a reload still running at shutdown."""
        await cancel_and_wait(self._task)


async def reload_ctx(app: web.Application) -> AsyncIterator[None]:
    """Install the SIGHUP handler while the app runs."""
    loop = asyncio.get_running_loop()
    reloader = Reloader(app)
    loop.add_signal_handler(signal.SIGHUP, reloader.request)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        await reloader.close()
