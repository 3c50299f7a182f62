"""What the MQTT publisher needs from the appliance: identity, the viewer's address, health."""

from __future__ import annotations

from aiohttp import web

from .. import __version__
from ..events.mqtt import MqttHost
from ..events.mqtt.discovery import Device
from ..runtime import AGENT
from .health import health_document
from .netifs import select_addresses
from .runtime import APPLIANCE


def viewer_url(app: web.Application) -> str:
    """http://<first LAN address>:<port>/ (the host name when no address is usable)."""
    life, cfg = app[APPLIANCE].lifecycle, app[AGENT].config
    port = life.ports[0] if life.ports else cfg.server.port
    host = cfg.server.host
    if host in ("0.0.0.0", "::", ""):
        addresses = select_addresses(cfg.mdns.interfaces)
        host = addresses[0] if addresses else f"{app[APPLIANCE].identity.hostname}.local"
    return f"http://{host}:{port}/"


def mqtt_host(app: web.Application) -> MqttHost:
    """The appliance side of the MQTT service."""
    identity = app[APPLIANCE].identity

    def device() -> Device:
        engine = app[AGENT].engine_or_none
        model = engine.model.name if engine is not None else "unknown"
        name = app[AGENT].config.mdns.instance_name or identity.hostname
        return Device(
            identity.device_id, f"Edge Agent {name}", f"Edge Agent ({model})", __version__, viewer_url(app)
        )

    return MqttHost(identity.device_id, device, lambda: health_document(app))
