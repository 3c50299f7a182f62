"""Start-up and shutdown notifications: STATUS while compiling, READY=1 once listening, STOPPING=1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from ..runtime import AGENT
from .checks import report_config
from .runtime import APPLIANCE
from .state import ports_from_banner
from .status import status_line
from .tasks import cancel_and_wait

if TYPE_CHECKING:
    from ..inference.engine import Engine

log = logging.getLogger(__name__)

STATUS_REFRESH_SECONDS = 5.0
# Margin on top of engine.compile_timeout for loading the model and building the pipeline.
EXTEND_MARGIN_SECONDS = 60.0


def attach_engine(app: web.Application, engine: Engine) -> None:
    """Forward the engine's progress to STATUS= and keep systemd's start timeout ahead of each compile."""
    notifier = app[APPLIANCE].notifier
    budget = app[AGENT].config.engine.compile_timeout + EXTEND_MARGIN_SECONDS

    def on_status(text: str) -> None:
        notifier.status(text)
        notifier.extend_timeout(budget)

    engine.on_status = on_status


def mark_listening(app: web.Application, ports: list[int]) -> None:
    """The port listens and the engine is warm: record the ports and send READY=1."""
    life = app[APPLIANCE].lifecycle
    life.ports = ports
    life.listening.set()
    report_config(app)
    app[APPLIANCE].notifier.ready(status_line(app))
    log.info("READY=1 sent: %s", app[APPLIANCE].notifier.last_status)


def make_ready_printer(app: web.Application) -> Callable[[str], None]:
    """A `print=` callable for web.run_app: it runs after every site started, so it is where READY=1 belongs."""

    def ready(banner: str) -> None:
        print(banner, flush=True)
        mark_listening(app, ports_from_banner(banner))

    return ready


async def on_shutdown(app: web.Application) -> None:
    """First thing on SIGTERM/SIGINT (sites already closed): STOPPING=1 and wake tasks that must say goodbye."""
    app[APPLIANCE].lifecycle.stopping.set()
    app[APPLIANCE].notifier.stopping()
    log.info("shutting down")


async def _refresh_status(app: web.Application) -> None:
    life = app[APPLIANCE].lifecycle
    await life.listening.wait()
    while not life.stopping.is_set():
        app[APPLIANCE].notifier.status(status_line(app))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(life.stopping.wait(), STATUS_REFRESH_SECONDS)


async def notify_ctx(app: web.Application) -> AsyncIterator[None]:
    """Runs before the engine: announce start-up; keep STATUS= current while serving; close the socket last."""
    notifier = app[APPLIANCE].notifier
    notifier.status("starting: loading model")
    notifier.extend_timeout(app[AGENT].config.engine.compile_timeout + EXTEND_MARGIN_SECONDS)
    task = asyncio.create_task(_refresh_status(app), name="systemd-status")
    try:
        yield
    finally:
        await cancel_and_wait(task)
        notifier.status("stopped")
        notifier.close()
