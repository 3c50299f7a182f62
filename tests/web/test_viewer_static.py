"""The viewer page and its assets are served from the package, self-contained (no CDN, no build step)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from edge_agent.web import STATIC_DIR, setup_viewer

Client = TestClient[Any, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]

JS_IMPORT = re.compile(r"""^\s*import\s[^'"]*['"](\./[^'"]+)['"]""", re.MULTILINE)


@pytest.fixture
async def client(aiohttp_client: MakeClient) -> Client:
    app = web.Application()
    setup_viewer(app)
    return await aiohttp_client(app)


def referenced_assets() -> set[str]:
    """Every file the page loads: from index.html, then the ES module imports, transitively."""
    html = (STATIC_DIR / "index.html").read_text()
    found = set(re.findall(r'(?:src|href)="/viewer/([^"]+)"', html))
    todo = [f for f in found if f.endswith(".js")]
    while todo:
        for rel in JS_IMPORT.findall((STATIC_DIR / todo.pop()).read_text()):
            name = rel.removeprefix("./")
            if name not in found:
                found.add(name)
                todo.append(name)
    return found


async def test_index_is_html_with_a_strict_policy(client: Client) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    body = await resp.text()
    assert '<script type="module" src="/viewer/viewer.js">' in body
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert resp.headers["Referrer-Policy"] == "no-referrer"


async def test_every_referenced_asset_is_served_with_its_type(client: Client) -> None:
    assets = referenced_assets()
    modules = {
        "viewer.js",
        "live.js",
        "observer.js",
        "stream.js",
        "events.js",
        "overlay.js",
        "source.js",
        "ui.js",
    }
    assert {"viewer.css", *modules} <= assets
    for name in sorted(assets):
        resp = await client.get(f"/viewer/{name}")
        assert resp.status == 200, name
        expected = "text/css" if name.endswith(".css") else "javascript"
        assert expected in resp.content_type, (name, resp.content_type)
        assert await resp.read() == (STATIC_DIR / name).read_bytes()


def test_page_is_self_contained() -> None:
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"(?:src|href)=\"(?:https?:)?//", text), f"{path.name} loads from another host"
        assert not re.search(r"""\bimport\s[^;]*['"]https?:""", text), (
            f"{path.name} imports from another host"
        )
        assert "@import" not in text, path.name


def test_static_dir_is_flat_so_package_data_ships_it() -> None:
    # pyproject's package-data glob is "web/static/*": files in sub-directories would be left out of the wheel.
    assert all(p.is_file() for p in STATIC_DIR.iterdir())
    assert (STATIC_DIR / "index.html").is_file()


@pytest.mark.parametrize("path", ["/viewer/../__init__.py", "/viewer/%2e%2e/__init__.py", "/viewer/nope.js"])
async def test_no_escape_from_the_static_dir(client: Client, path: str) -> None:
    resp = await client.get(path)
    assert resp.status in (403, 404)
    assert "setup_viewer" not in await resp.text()
