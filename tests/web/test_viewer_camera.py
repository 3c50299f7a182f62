"""The viewer watches a camera the box pulls itself: the camera's latest frame under its live boxes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser

from edge_agent.app import create_app
from edge_agent.config import Config, LoadedConfig
from edge_agent.config.cameras import CameraConfig
from tests.support.cameras import PEOPLE, make_clip
from tests.web.test_viewer_browser import TIMEOUT_MS, browser, fake_camera, open_page, screenshot_rgb

__all__ = ["browser", "fake_camera"]  # fixtures used below


@pytest.fixture
async def camera_server(config: Config, tmp_path: Path, photos: dict[str, bytes]) -> AsyncIterator[str]:
    """An app watching a looping file camera `yard`; its base URL."""
    clip = make_clip(tmp_path / "yard.mp4", [photos[n] for n in PEOPLE], 640, 480, 10, 0.5)
    cfg = config.model_copy(deep=True)
    cfg.cameras = [CameraConfig(id="yard", url=str(clip), fps=5)]
    runner = web.AppRunner(create_app(LoadedConfig(config=cfg, sources={}, path=None)))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_observer_shows_a_cameras_frames_and_boxes(
    camera_server: str, browser: Browser, artifacts: Path
) -> None:
    problems: list[str] = []
    page = await open_page(browser, f"{camera_server}/?observe=yard", problems)
    await page.wait_for_function(
        """() => { const o = edgeViewer.observer;
                   return o.camera && o.pictures >= 2 && o.drawn.length > 0
                          && o.last.detections.some((d) => d.label === 'person'); }""",
        timeout=TIMEOUT_MS,
    )
    frame = await page.evaluate(
        """() => { const img = document.getElementById('observer-frame');
                   return { size: edgeViewer.observer.picture, hidden: img.hidden,
                            options: [...document.querySelectorAll('#camera-ids option')].map((o) => o.value) }; }"""
    )
    png = await page.locator("#observer .stage").screenshot()
    (artifacts / "viewer-camera.png").write_bytes(png)
    await page.close()
    assert frame == {"size": [640, 480], "hidden": False, "options": ["yard"]}
    shot = screenshot_rgb(png)
    assert shot.std() > 20  # a photograph, not the blank stage
    assert problems == []
