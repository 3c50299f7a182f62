"""`edge-agent bench`: its photo mix, its errors, and its clients against a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.tools import bench
from edge_agent.tools.bench_clients import drive, overload
from edge_agent.tools.bench_photos import MAX_BYTES, NoPhotos, load_photos
from edge_agent.tools.bench_report import OverloadRound
from tests.support.streams import Serve, ov_cache, serve

__all__ = ["ov_cache", "serve"]


def test_default_mix_is_six_real_photos_of_different_sizes() -> None:
    photos = load_photos()
    sizes = {p.name: (p.width, p.height) for p in photos}
    assert sizes == {
        "dog": (768, 576),
        "eagle": (773, 512),
        "giraffe": (500, 500),
        "horses": (773, 512),
        "kite": (1280, 852),  # 1352x900 and 1.4 MB in the package: sent as a 1280 px camera would
        "person": (640, 424),
    }
    assert all(len(p.data) <= MAX_BYTES for p in photos)


def test_images_dir_round_robin_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    darknet = load_photos()
    for p in darknet[:2]:
        (tmp_path / f"{p.name}.JPG").write_bytes(p.data)
    assert [p.name for p in load_photos(str(tmp_path))] == ["dog", "eagle"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NoPhotos, match=r"no \.jpg/\.jpeg files"):
        load_photos(str(empty))
    (empty / "bad.jpg").write_bytes(b"not a jpeg")
    assert bench.main(["--images", str(empty), "--stages"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: ") and "bad.jpg: not a readable JPEG" in err and "Traceback" not in err


def test_no_default_mix_asks_for_images(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("edge_agent.tools.bench_photos.default_dirs", lambda: [tmp_path])
    with pytest.raises(NoPhotos, match="pass --images DIR"):
        load_photos()


async def test_closed_and_open_loop_clients_against_a_server(serve: Serve) -> None:
    client = await serve(
        streaming__max_fps=240.0, streaming__default_fps=240.0, streaming__adaptive_fps=False
    )
    url = str(client.make_url("/stream/detection")).replace("http", "ws", 1)
    photos = load_photos()
    run = await drive(url, 2, 1.5, photos)
    assert run.fps > 0 and run.errors == 0 and len(run.stages) == len(run.latencies) > 0
    assert {"decode", "inference", "total"} <= set(run.stages[0])
    cams = await overload(url, 2, 8.0, 1.5, photos)
    result = OverloadRound(run, cams, {}, 1.5)
    assert result.answered_all and all(c.sent >= 10 and c.processed for c in cams)
    assert result.p99 > 0 and result.fairness < 1.0
