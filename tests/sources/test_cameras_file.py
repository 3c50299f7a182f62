"""Looping file cameras, fair sharing with WebSocket clients, and cameras changed by a reload."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from edge_agent.app import create_app
from edge_agent.appliance.reload import reload_config
from edge_agent.config import Config, load_config
from edge_agent.sources.cameras import CAMERAS
from edge_agent.sources.registry import SOURCES
from tests.support.agent import write_config
from tests.support.cameras import PEOPLE, camera_json, detections_of, make_clip, serve_cameras, wait_state
from tests.support.streams import next_json, ov_cache

__all__ = ["ov_cache"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, bytes]) -> Path:
    """A 1.2 s H.264 clip at 25 fps of photographs with people (it loops)."""
    path = tmp_path_factory.mktemp("clip") / "people.mp4"
    return make_clip(path, [photos[n] for n in PEOPLE], 640, 480, 25, 0.4)


async def test_file_loops_and_keeps_only_the_newest_frame(config: Config, ov_cache: Path, clip: Path) -> None:
    client = await serve_cameras(config, ov_cache, [{"id": "demo", "url": str(clip), "fps": 8}])
    try:
        events = await detections_of(client, "demo", 14)  # 1.75 s of processing: past the clip's end
        row = await camera_json(client, "demo")
        source = client.app[CAMERAS].cameras["demo"].source
    finally:
        await client.close()
    assert row["state"] == "streaming" and row["kind"] == "file" and row["stream_fps"] == 25.0
    assert row["frames_decoded"] > 30 > row["frames"]["received"]  # decoded at 25 fps, sent at 8
    assert {d["label"] for ev in events for d in ev["detections"]} >= {"person"}
    ids = [ev["frame_id"] for ev in events]
    assert max(b - a for a, b in itertools.pairwise(ids)) >= 2  # skipped frames never queued
    assert source.unanswered == 0


async def _ws_client(client: TestClient[Any, Any], name: str, jpeg: bytes, until: float) -> int:
    """A closed-loop WebSocket client as fast as it is answered; returns frames processed."""
    processed = 0
    async with client.ws_connect(f"/stream/detection?client_id={name}") as ws:
        await next_json(ws)
        await ws.send_json({"type": "config", "fps_limit": 240})
        await next_json(ws)
        while time.monotonic() < until:
            await ws.send_bytes(jpeg)
            reply = await next_json(ws)
            processed += reply["type"] == "detections"
    return processed


async def test_two_cameras_and_two_websocket_clients_share_fairly(
    config: Config, ov_cache: Path, clip: Path, photos: dict[str, bytes]
) -> None:
    cameras = [{"id": "cam-a", "url": str(clip)}, {"id": "cam-b", "url": str(clip)}]
    client = await serve_cameras(config, ov_cache, cameras, streaming__max_fps=240.0)
    try:
        await wait_state(client, "cam-a", "streaming")
        await wait_state(client, "cam-b", "streaming")
        sources = client.app[SOURCES].registry
        before = {s.client_id: s.stats.processed for s in sources}
        until = time.monotonic() + 4.0
        ws = await asyncio.gather(*(_ws_client(client, n, photos["zidane"], until) for n in ("ws-a", "ws-b")))
        cams = {s.client_id: s.stats.processed - before[s.client_id] for s in sources}
        waiting = max(s.unanswered for s in sources)
    finally:
        await client.close()
    counts = [cams["cam-a"], cams["cam-b"], *ws]
    print("processed in 4 s (cam-a, cam-b, ws-a, ws-b):", counts)
    assert min(counts) >= 8  # everyone served, at least 2 fps each
    assert min(counts[:2]) >= 0.3 * max(counts[2:])  # cameras are not starved by greedy clients
    assert waiting <= 4  # latest wins: nothing queues up


async def test_reload_adds_removes_and_changes_cameras_without_touching_others(
    tmp_path: Path, default_model: Path, clip: Path, ov_cache: Path
) -> None:
    def config_file(cams: str) -> Path:
        path = write_config(tmp_path / "config.toml", ov_cache)
        path.write_text(path.read_text() + cams)
        return path

    keep = f'[[cameras]]\nid = "keep"\nurl = "{clip}"\n'
    path = config_file(keep + f'[[cameras]]\nid = "drop"\nurl = "{clip}"\n')
    client = TestClient(TestServer(create_app(load_config(path, environ={}))))
    await client.start_server()
    try:
        manager = client.app[CAMERAS]
        await wait_state(client, "keep", "streaming")
        kept = manager.cameras["keep"]
        config_file(keep + f'[[cameras]]\nid = "new"\nurl = "{clip}"\nfps = 3\n')
        assert await reload_config(client.app)
        assert set(manager.cameras) == {"keep", "new"} and manager.cameras["keep"] is kept
        assert kept.status.up and kept.status.frames_decoded > 0
        config_file(keep + '[[cameras]]\nid = "new"\nurl = "rtsp://x/"\nfps = 0\n')  # invalid: rejected
        assert not await reload_config(client.app)
        assert set(manager.cameras) == {"keep", "new"} and manager.cameras["new"].cam.fps == 3
        events = await detections_of(client, "new", 2)
    finally:
        await client.close()
    assert events[0]["client_id"] == "new"
    assert kept.status.state == "stopped"  # stopped with the app, not before


async def test_camera_sessions_end_with_their_hazards_on_shutdown(
    config: Config, ov_cache: Path, clip: Path
) -> None:
    client = await serve_cameras(config, ov_cache, [{"id": "end", "url": str(clip)}])
    async with aiohttp.ClientSession() as http, http.get(client.make_url("/stream/events/end")) as resp:
        seen: list[bytes] = []
        async for line in resp.content:
            seen.append(line)
            if b'"state":"started"' in line:
                break
        await client.close()
        rest = await resp.content.read()
    text = b"".join(seen).decode() + rest.decode()
    assert '"state":"started"' in text and '"state":"ended"' in text
    assert '"state":"disconnected"' in text


async def test_a_file_without_video_says_so(config: Config, ov_cache: Path, tmp_path: Path) -> None:
    wav = tmp_path / "sound.wav"
    with av.open(str(wav), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    client = await serve_cameras(config, ov_cache, [{"id": "mic", "url": str(wav)}])
    try:
        row = await wait_state(client, "mic", "retrying")
    finally:
        await client.close()
    assert row["last_error"] == "no video stream" and row["reason"].endswith(": no video stream")
