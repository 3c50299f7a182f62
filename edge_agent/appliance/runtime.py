"""The appliance package's runtime object: systemd notifier, lifecycle, identity, monitor, mDNS advertiser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .identity import Identity
    from .mdns import Advertiser
    from .monitor import InferenceMonitor
    from .notify import Notifier
    from .state import Lifecycle


@dataclass
class Appliance:
    """Everything the appliance parts share, in one typed object on the app."""

    notifier: Notifier
    lifecycle: Lifecycle
    identity: Identity
    monitor: InferenceMonitor
    advertiser: Advertiser


APPLIANCE: web.AppKey[Appliance] = web.AppKey("appliance", Appliance)
