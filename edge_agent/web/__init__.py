"""The live viewer page served at GET /: plain HTML/JS/CSS shipped in edge_agent/web/static."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).with_name("static")
ASSET_PREFIX = "/viewer/"

# The page only talks to its own origin; inline scripts and third-party hosts are never needed.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
    "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": _CSP,
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # The page URL may carry ?token=; never leak it to other sites.
    "Referrer-Policy": "no-referrer",
}


async def viewer_page(request: web.Request) -> web.FileResponse:
    """Serve the viewer's index.html."""
    return web.FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)


def setup_viewer(app: web.Application) -> None:
    """Register the viewer page and its static files on the app."""
    app.router.add_get("/", viewer_page, name="viewer")
    app.router.add_static(ASSET_PREFIX, STATIC_DIR, name="viewer_static", append_version=False)
