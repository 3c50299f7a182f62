"""Typed application keys owned by the appliance package."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .identity import Identity
    from .mdns import Advertiser
    from .monitor import InferenceMonitor
    from .notify import Notifier
    from .state import Lifecycle

NOTIFIER_KEY: web.AppKey[Notifier] = web.AppKey("notifier")
LIFECYCLE_KEY: web.AppKey[Lifecycle] = web.AppKey("lifecycle")
MONITOR_KEY: web.AppKey[InferenceMonitor] = web.AppKey("inference_monitor")
IDENTITY_KEY: web.AppKey[Identity] = web.AppKey("identity")
ADVERTISER_KEY: web.AppKey[Advertiser] = web.AppKey("mdns_advertiser")
