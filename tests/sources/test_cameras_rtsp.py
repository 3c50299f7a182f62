"""RTSP cameras against a real GStreamer RTSP server serving H.264 made from real photographs."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import simplejpeg

from edge_agent.config import Config
from edge_agent.sources.cameras import CAMERAS
from tests.support.cameras import (
    PEOPLE,
    RtspServer,
    camera_json,
    connections_to,
    detections_of,
    open_fds,
    serve_cameras,
    wait_state,
    write_frames,
)
from tests.support.streams import ov_cache

__all__ = ["ov_cache"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, bytes]) -> Path:
    """Photographs with people, as 640x480 frames the server loops over."""
    return write_frames(tmp_path_factory.mktemp("frames"), [photos[n] for n in PEOPLE])


@pytest.fixture
def rtsp(frames: Path) -> Iterator[RtspServer]:
    """A running RTSP server (stopped after the test)."""
    server = RtspServer(frames, fps=10)
    yield server
    server.stop()


async def test_rtsp_detections_reach_sse_with_the_right_labels(
    config: Config, ov_cache: Path, rtsp: RtspServer
) -> None:
    client = await serve_cameras(config, ov_cache, [{"id": "dock-1", "url": rtsp.url()}])
    try:
        events = await detections_of(client, "dock-1", 12)
        row = await camera_json(client, "dock-1")
        snap = await client.get("/v1/cameras/dock-1/snapshot.jpg")
        boxed = await client.get("/v1/cameras/dock-1/snapshot.jpg?boxes=1")
        snap_body, boxed_body = await snap.read(), await boxed.read()
    finally:
        await client.close()
    assert all(ev["client_id"] == "dock-1" and ev["image_size"] == [640, 480] for ev in events)
    ids = [ev["frame_id"] for ev in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    labels = {d["label"] for ev in events for d in ev["detections"]}
    assert "person" in labels and labels & {"dog", "horse", "bus"}  # the photos' other subjects
    assert any(h["rule"] == "person" and h["active"] for ev in events for h in ev["hazards"])
    assert set(events[-1]["timing_ms"]) >= {"queue", "decode", "preprocess", "inference", "total"}
    assert row["state"] == "streaming" and row["codec"] == "h264" and row["resolution"] == [640, 480]
    assert row["stream_fps"] == 10.0 and row["reconnects"] == 0 and row["frames_decoded"] >= 12
    assert snap.status == boxed.status == 200 and snap.content_type == "image/jpeg"
    plain = simplejpeg.decode_jpeg(snap_body)
    assert plain.shape == (480, 640, 3) and simplejpeg.decode_jpeg(boxed_body).shape == plain.shape
    assert snap_body != boxed_body


async def test_server_killed_mid_stream_retries_and_comes_back(
    config: Config, ov_cache: Path, frames: Path
) -> None:
    server = RtspServer(frames, fps=10)
    port = server.port
    client = await serve_cameras(config, ov_cache, [{"id": "gate", "url": server.url(), "timeout": 3}])
    try:
        await wait_state(client, "gate", "streaming")
        await detections_of(client, "gate", 3)
        threads, fds = threading.active_count(), open_fds()
        for attempt in range(2):  # twice: a leak per reconnect would show as growth between rounds
            server.kill()
            down = await wait_state(client, "gate", "retrying")
            assert down["reason"].startswith("retrying in ") and down["last_error"]
            health = await (await client.get("/healthz")).json()
            assert health["checks"]["camera:gate"][0]["status"] == "warn" and health["status"] != "fail"
            server = RtspServer(frames, fps=10, port=port)
            back = await wait_state(client, "gate", "streaming", timeout=30)
            assert back["reconnects"] == attempt + 1
            await detections_of(client, "gate", 3)
            assert connections_to(port) == 1  # the old connection is closed, not left in CLOSE_WAIT
            if attempt == 0:
                threads, fds = threading.active_count(), open_fds()
        # The test's own HTTP connections come and go: fds may shrink, they must not grow.
        assert threading.active_count() == threads and open_fds() <= fds
        metrics = await (await client.get("/metrics")).text()
        assert 'edge_agent_camera_reconnects_total{camera="gate"} 2.0' in metrics
        assert 'edge_agent_camera_up{camera="gate"} 1.0' in metrics
    finally:
        await client.close()
        server.stop()


async def test_wrong_credentials_say_401_and_the_password_never_shows(
    config: Config, ov_cache: Path, frames: Path, tmp_path: Path
) -> None:
    server = RtspServer(frames, fps=10, user="admin", password="s3cret-pw")
    secret = tmp_path / "pw"
    secret.write_text("s3cret-pw\n")
    cameras: list[dict[str, Any]] = [
        {"id": "wrong", "url": server.url("admin", "not-the-pw1"), "timeout": 3},
        {"id": "right", "url": server.url("admin"), "password_file": str(secret)},
    ]
    client = await serve_cameras(config, ov_cache, cameras)
    try:
        wrong = await wait_state(client, "wrong", "retrying")
        await wait_state(client, "right", "streaming")
        await detections_of(client, "right", 2)
        bodies = [
            await (await client.get(path)).text()
            for path in ("/v1/cameras", "/healthz", "/metrics", "/v1/info")
        ]
    finally:
        await client.close()
        server.stop()
    assert wrong["last_error"] == "401 Unauthorized"
    assert wrong["reason"].startswith("retrying in ") and wrong["reason"].endswith(": 401 Unauthorized")
    assert wrong["url"] == f"rtsp://admin:***@127.0.0.1:{server.port}/cam"
    for body in bodies:
        assert "not-the-pw1" not in body and "s3cret-pw" not in body


async def test_unreachable_camera_does_not_disturb_the_others(
    config: Config, ov_cache: Path, rtsp: RtspServer
) -> None:
    cameras: list[dict[str, Any]] = [
        {"id": "ok", "url": rtsp.url()},
        {"id": "gone", "url": "rtsp://127.0.0.1:9/cam", "timeout": 2},
        {"id": "off", "url": rtsp.url(), "enabled": False},
    ]
    client = await serve_cameras(config, ov_cache, cameras)
    try:
        gone = await wait_state(client, "gone", "retrying")
        events = await detections_of(client, "ok", 5)
        off = await camera_json(client, "off")
        assert set(client.app[CAMERAS].cameras) == {"ok", "gone"}
        missing = await client.get("/v1/cameras/off/snapshot.jpg")
    finally:
        await client.close()
    assert gone["last_error"] == "connection refused"
    assert len(events) == 5 and off["state"] == "disabled"
    assert missing.status == 404


async def test_a_stalled_stream_is_detected_by_its_timeout(
    config: Config, ov_cache: Path, rtsp: RtspServer
) -> None:
    client = await serve_cameras(config, ov_cache, [{"id": "frozen", "url": rtsp.url(), "timeout": 1.5}])
    try:
        await wait_state(client, "frozen", "streaming")
        rtsp.proc.send_signal(signal.SIGSTOP)  # the connection stays open, nothing more comes
        try:
            row = await wait_state(client, "frozen", "retrying", timeout=15)
        finally:
            rtsp.proc.send_signal(signal.SIGCONT)
    finally:
        await client.close()
    assert row["last_error"] == "stalled: no frame for 1.5 s"
