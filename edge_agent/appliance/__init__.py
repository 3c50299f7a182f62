"""Appliance integration: systemd notify/watchdog, mDNS, health, metrics exposition, info, reload, lifecycle."""

from aiohttp import web

from .fault import add_fault_routes
from .health import add_health_routes
from .identity import local_identity
from .info import add_info_routes
from .lifecycle import attach_engine, make_ready_printer, mark_listening, notify_ctx, on_shutdown
from .mdns import Advertiser, mdns_ctx
from .monitor import InferenceMonitor, monitor_ctx
from .notify import Notifier
from .reload import reload_ctx
from .runtime import APPLIANCE, Appliance
from .scrape import add_metrics_routes, metrics_ctx
from .serve import async_serve, bind_sockets, drain_middleware, engine_stop_budget
from .state import Lifecycle
from .watchdog import watchdog_ctx

__all__ = [
    "APPLIANCE",
    "Appliance",
    "async_serve",
    "attach_engine",
    "bind_sockets",
    "engine_stop_budget",
    "make_ready_printer",
    "mark_listening",
    "setup_appliance",
]


def setup_appliance(app: web.Application) -> None:
    """Register the appliance's runtime object, routes and cleanup contexts on the app."""
    app[APPLIANCE] = Appliance(
        notifier=Notifier(),
        lifecycle=Lifecycle(),
        identity=local_identity(),
        monitor=InferenceMonitor(app),
        advertiser=Advertiser(app),
    )
    # Before the engine's context: STATUS and EXTEND_TIMEOUT_USEC cover the compile; torn down last.
    app.cleanup_ctx.insert(0, notify_ctx)
    app.cleanup_ctx.extend([metrics_ctx, monitor_ctx, watchdog_ctx, mdns_ctx, reload_ctx])
    app.on_shutdown.insert(0, on_shutdown)
    app.middlewares.append(drain_middleware)
    add_health_routes(app)
    add_metrics_routes(app)
    add_info_routes(app)
    add_fault_routes(app)
