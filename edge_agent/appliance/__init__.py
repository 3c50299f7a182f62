"""Appliance integration: systemd notify/watchdog, mDNS, health, metrics, lifecycle."""

from aiohttp import web


def setup_appliance(app: web.Application) -> None:
    """Register the appliance's routes and cleanup contexts on the app."""
