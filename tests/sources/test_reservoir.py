"""The on-site calibration reservoir: a uniform bounded sample, 0600 files, fed by real /v1/detect frames."""

from __future__ import annotations

import json
import random
import stat
from pathlib import Path
from typing import Any

from edge_agent.app import create_app
from edge_agent.config import CalibrationConfig, Config, LoadedConfig
from edge_agent.inference.contract import JpegFrame
from edge_agent.sources.reservoir import STATE_FILE, Reservoir, frame_path


def _frames(n: int) -> list[JpegFrame]:
    return [JpegFrame(b"\xff\xd8" + i.to_bytes(4, "big"), 1, 1) for i in range(n)]


def _kept(folder: Path) -> set[bytes]:
    return {p.read_bytes() for p in folder.glob("frame-*.jpg")}


def test_sample_is_bounded_uniform_and_private(tmp_path: Path) -> None:
    frames = _frames(20)
    hits = {f.data: 0 for f in frames}
    for trial in range(200):
        folder = tmp_path / str(trial)
        reservoir = Reservoir(
            CalibrationConfig(keep_frames=4, dir=str(folder), min_interval=0), random.Random(trial)
        )
        for f in frames:
            reservoir.offer(f)
        reservoir.close()
        kept = _kept(folder)
        assert len(kept) == 4
        for data in kept:
            hits[data] += 1
    # Each of the 20 frames is kept with probability 4/20 (3 sigma of 200 trials is 0.085).
    assert all(abs(h / 200 - 0.2) < 0.09 for h in hits.values()), hits
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()} == {0o600}
    assert json.loads((folder / STATE_FILE).read_text()) == {"seen": 20}


def test_interval_and_restart(tmp_path: Path) -> None:
    cfg = CalibrationConfig(keep_frames=3, dir=str(tmp_path), min_interval=3600)
    reservoir = Reservoir(cfg)
    for f in _frames(5):
        reservoir.offer(f)  # all within one interval: only the first is considered
    reservoir.close()
    assert _kept(tmp_path) == {_frames(1)[0].data} and reservoir.seen == 1
    again = Reservoir(cfg)  # a restart goes on counting from what was offered before
    assert again.seen == 1
    again.close()


async def test_agent_keeps_frames_it_serves(
    config: Config, photos: dict[str, bytes], tmp_path: Path, aiohttp_client: Any
) -> None:
    folder = tmp_path / "calibration"
    cfg = config.model_copy(
        update={"calibration": CalibrationConfig(keep_frames=2, dir=str(folder), min_interval=0)}
    )
    app = create_app(LoadedConfig(config=cfg, sources={}, path=None))
    client = await aiohttp_client(app)
    sent = [photos[n] for n in ("bus", "zidane", "dog")]
    for jpeg in sent:
        resp = await client.post("/v1/detect", data=jpeg, headers={"Content-Type": "image/jpeg"})
        assert resp.status == 200
    await client.close()  # cleanup: pending writes finish
    kept = _kept(folder)
    assert len(kept) == 2 and kept <= set(sent)
    assert frame_path(folder, 0).is_file() and frame_path(folder, 1).is_file()
