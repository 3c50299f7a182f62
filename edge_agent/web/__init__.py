"""The live viewer page served at GET /."""

from aiohttp import web


def setup_viewer(app: web.Application) -> None:
    """Register the viewer page and its static files on the app."""
