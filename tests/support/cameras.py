"""Camera test helpers (no tests here): a real GStreamer RTSP server, H.264 clips and frames from photographs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import simplejpeg
from aiohttp.test_utils import TestClient, TestServer

from edge_agent.app import create_app
from edge_agent.config import Config
from edge_agent.config.cameras import CameraConfig
from tests.support.streams import SseReader, loaded

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
# Photographs with people in them (and one without), from tests/conftest.py's `photos`.
PEOPLE = ("person_dog", "zidane", "bus")


def fitted(jpeg: bytes, width: int, height: int) -> np.ndarray:
    """A photo scaled (nearest) and padded into width x height RGB, aspect kept."""
    image = np.asarray(simplejpeg.decode_jpeg(jpeg, colorspace="RGB"))
    scale = min(width / image.shape[1], height / image.shape[0])
    w, h = max(1, int(image.shape[1] * scale)), max(1, int(image.shape[0] * scale))
    ys = (np.arange(h) / scale).astype(np.intp).clip(0, image.shape[0] - 1)
    xs = (np.arange(w) / scale).astype(np.intp).clip(0, image.shape[1] - 1)
    out = np.full((height, width, 3), 114, np.uint8)
    top, left = (height - h) // 2, (width - w) // 2
    out[top : top + h, left : left + w] = image[ys][:, xs]
    return out


def write_frames(folder: Path, photos: Iterable[bytes], width: int = 640, height: int = 480) -> Path:
    """The photos as %03d.jpg frames of one size (what the RTSP server loops over)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, jpeg in enumerate(photos):
        rgb = fitted(jpeg, width, height)
        (folder / f"{i:03d}.jpg").write_bytes(simplejpeg.encode_jpeg(rgb, quality=90, colorspace="RGB"))
    return folder


def make_clip(
    path: Path, photos: Iterable[bytes], width: int, height: int, fps: int, seconds_each: float
) -> Path:
    """An H.264 clip (MP4, libx264 in PyAV's FFmpeg) showing each photo for `seconds_each`."""
    images = [fitted(p, width, height) for p in photos]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for image in images:
            for _ in range(max(1, round(fps * seconds_each))):
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


class RtspServer:
    """gst-rtsp-server in a subprocess of the system Python; stops when we close its stdin or kill it."""

    def __init__(
        self,
        frames: Path,
        *,
        fps: int = 10,
        size: str = "640x480",
        port: int = 0,
        user: str | None = None,
        password: str | None = None,
        stamps: bool = False,
    ) -> None:
        if not os.path.exists(SYSTEM_PYTHON):
            pytest.fail("system python3 missing: install python3-gi and gir1.2-gst-rtsp-server-1.0")
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--frames-dir", str(frames), "--fps", str(fps)]
        cmd += ["--size", size, "--port", str(port)]
        if user:
            cmd += ["--user", user, "--password", password or ""]
        if stamps:
            cmd.append("--stamps")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.stamps: dict[int, float] = {}
        self._ready = threading.Event()
        self.port = 0
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(20):
            err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
            self.stop()
            pytest.fail(f"RTSP server did not start: {err}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word, *rest = line.split()
            if word == "READY":
                self.port = int(rest[0])
                self._ready.set()
            elif word == "FRAME":
                self.stamps[int(rest[0])] = float(rest[1])

    def url(self, user: str | None = None, password: str | None = None) -> str:
        """rtsp://[user[:password]@]127.0.0.1:port/cam"""
        auth = "" if user is None else (user if password is None else f"{user}:{password}") + "@"
        return f"rtsp://{auth}127.0.0.1:{self.port}/cam"

    def kill(self) -> None:
        """Die at once, as a camera losing power does."""
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        """Stop (closing stdin ends it), then make sure."""
        if self.proc.poll() is None:
            if self.proc.stdin:
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()


def open_fds() -> int:
    """File descriptors of this process."""
    return len(os.listdir("/proc/self/fd"))


async def serve_cameras(
    config: Config, cache: Path, cameras: list[dict[str, Any]], **overrides: Any
) -> TestClient[Any, Any]:
    """A real app (create_app, real engine) watching these cameras; close it with `await client.close()`."""
    cfg = loaded(config, cache, overrides)
    cfg.config.cameras = [CameraConfig(**c) for c in cameras]
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    return client


async def camera_json(client: TestClient[Any, Any], camera_id: str) -> dict[str, Any]:
    """One camera's row of /v1/cameras."""
    resp = await client.get("/v1/cameras")
    assert resp.status == 200
    rows: list[dict[str, Any]] = (await resp.json())["cameras"]
    return next(r for r in rows if r["id"] == camera_id)


async def wait_state(
    client: TestClient[Any, Any], camera_id: str, state: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Poll /v1/cameras until the camera is in `state` (the state is what the test observes)."""
    deadline = time.monotonic() + timeout
    while True:
        row = await camera_json(client, camera_id)
        if row["state"] == state:
            return row
        assert time.monotonic() < deadline, f"{camera_id} not {state} within {timeout} s: {row}"
        await asyncio.sleep(0.1)


async def detections_of(client: TestClient[Any, Any], camera_id: str, count: int) -> list[dict[str, Any]]:
    """The next `count` detections events of a camera, read from its SSE stream."""
    got: list[dict[str, Any]] = []
    async with client.get(f"/stream/events/{camera_id}") as resp:
        reader = SseReader(resp)
        while len(got) < count:
            got.append((await reader.until("detections"))["json"])
    return got


def connections_to(port: int) -> int:
    """TCP sockets on this host connected to 127.0.0.1:port, TIME_WAIT aside (a leaked one stays CLOSE_WAIT)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if int(remote.split(":")[1], 16) == port and state != "06":
            count += 1
    return count
