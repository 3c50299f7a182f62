"""HTTP cameras against a real aiohttp server in the test: MJPEG multipart, a snapshot URL, basic auth."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from edge_agent.config import Config
from tests.support.cameras import PEOPLE, camera_json, detections_of, serve_cameras, wait_state
from tests.support.streams import ov_cache

__all__ = ["ov_cache"]
BOUNDARY = "edgeframe"
AUTH = "Basic " + base64.b64encode(b"viewer:pa55").decode()


class Camera:
    """An MJPEG camera: /mjpeg (multipart/x-mixed-replace, 10 fps), /snapshot.jpg, /html; basic auth."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.requests = 0
        self.app = web.Application()
        self.app.router.add_get("/mjpeg", self.mjpeg)
        self.app.router.add_get("/snapshot.jpg", self.snapshot)
        self.app.router.add_get("/html", self.html)

    def _authorized(self, request: web.Request) -> bool:
        self.requests += 1
        return request.headers.get("Authorization") == AUTH

    async def mjpeg(self, request: web.Request) -> web.StreamResponse:
        """Frames forever, each part with its Content-Length, as IP cameras send them."""
        if not self._authorized(request):
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="cam"'})
        resp = web.StreamResponse(headers={"Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}"})
        await resp.prepare(request)
        i = 0
        while True:
            jpeg = self.frames[i % len(self.frames)]
            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
            await resp.write(head.encode() + jpeg + b"\r\n")
            i += 1
            await asyncio.sleep(0.1)

    async def snapshot(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        return web.Response(body=self.frames[self.requests % len(self.frames)], content_type="image/jpeg")

    async def html(self, request: web.Request) -> web.Response:
        return web.Response(text="<html>login</html>", content_type="text/html")


@pytest.fixture
async def camera(photos: dict[str, bytes]) -> AsyncIterator[tuple[Camera, str]]:
    """The camera server on 127.0.0.1 and its base URL without credentials."""
    cam = Camera([photos[n] for n in PEOPLE])
    server = TestServer(cam.app, host="127.0.0.1")
    await server.start_server()
    yield cam, f"http://127.0.0.1:{server.port}"
    await server.close()


async def test_mjpeg_and_snapshot_frames_reach_the_engine_as_sent(
    config: Config, ov_cache: Path, camera: tuple[Camera, str], photos: dict[str, bytes]
) -> None:
    cam, base = camera
    host = base.removeprefix("http://")
    cameras: list[dict[str, Any]] = [
        {"id": "mjpeg", "url": f"http://viewer:pa55@{host}/mjpeg"},
        {"id": "snap", "url": f"http://viewer:pa55@{host}/snapshot.jpg", "fps": 4},
    ]
    client = await serve_cameras(config, ov_cache, cameras)
    try:
        mjpeg_events = await detections_of(client, "mjpeg", 6)
        snap_events = await detections_of(client, "snap", 3)
        mjpeg_row = await camera_json(client, "mjpeg")
        snap_row = await camera_json(client, "snap")
        shot = await (await client.get("/v1/cameras/mjpeg/snapshot.jpg")).read()
    finally:
        await client.close()
    sizes = {tuple(ev["image_size"]) for ev in mjpeg_events}
    assert sizes <= {(640, 424), (1280, 720), (810, 1080)} and len(sizes) >= 2  # the photos, unscaled
    labels = {d["label"] for ev in mjpeg_events + snap_events for d in ev["detections"]}
    assert {"person", "dog"} <= labels
    assert mjpeg_row["state"] == "streaming" and mjpeg_row["codec"] == "mjpeg"
    assert snap_row["state"] == "streaming" and snap_row["codec"] == "jpeg snapshot"
    assert snap_row["fps_limit"] == 4.0
    assert mjpeg_row["url"] == f"http://viewer:***@{host}/mjpeg"
    assert shot in cam.frames  # JPEG bytes went through untouched: no decode/re-encode


async def test_http_failures_have_clear_reasons(
    config: Config, ov_cache: Path, camera: tuple[Camera, str]
) -> None:
    _, base = camera
    cameras: list[dict[str, Any]] = [
        {"id": "noauth", "url": f"{base}/mjpeg", "timeout": 2},
        {"id": "page", "url": f"{base}/html", "timeout": 2},
        {"id": "missing", "url": f"{base}/nothing", "timeout": 2},
    ]
    client = await serve_cameras(config, ov_cache, cameras)
    try:
        rows = {c["id"]: await wait_state(client, c["id"], "retrying") for c in cameras}
    finally:
        await client.close()
    assert rows["noauth"]["last_error"] == "401 Unauthorized"
    assert rows["missing"]["last_error"] == "404 Not Found"
    assert rows["page"]["last_error"].startswith("content type 'text/html")
