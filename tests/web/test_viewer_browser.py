"""The viewer page in headless Chromium (Debian's package) against a real server, fake camera fed a real photo."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simplejpeg
from aiohttp import ClientSession, web
from PIL import Image
from playwright.async_api import Browser, Page, async_playwright

from edge_agent.app import create_app
from edge_agent.config import Config, LoadedConfig
from edge_agent.web import setup_viewer

CHROMIUM = Path("/usr/bin/chromium")
HAZARD_RGB = (255, 59, 48)  # overlay.js HAZARD_COLOR
CLIENT_ID = "viewer-e2e"
TIMEOUT_MS = 30_000


def y4m_from_jpeg(jpeg: bytes, frames: int = 4) -> bytes:
    """A YUV4MPEG2 (C420jpeg, full-range BT.601) clip of one photograph, for Chromium's fake camera."""
    rgb = simplejpeg.decode_jpeg(jpeg, colorspace="RGB").astype(np.float32)
    h, w = (d - d % 2 for d in rgb.shape[:2])
    r, g, b = rgb[:h, :w, 0], rgb[:h, :w, 1], rgb[:h, :w, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = -0.168736 * r - 0.331264 * g + 0.5 * b + 128
    v = 0.5 * r - 0.418688 * g - 0.081312 * b + 128

    def half(p: np.ndarray) -> np.ndarray:
        out: np.ndarray = p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        return out

    planes = b"".join(np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in (y, half(u), half(v)))
    return f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode() + (b"FRAME\n" + planes) * frames


def iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="session")
def fake_camera(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, bytes]) -> Path:
    # The bus photo (810x1080, people and a bus): YOLOv3-tiny does not find the astronaut's close-up person.
    path = tmp_path_factory.mktemp("camera") / "bus.y4m"
    path.write_bytes(y4m_from_jpeg(photos["bus"]))
    return path


class Servers:
    """Real apps on 127.0.0.1 (any port), each with optional [server] settings."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.runners: dict[str, web.AppRunner] = {}

    async def start(self, **server: Any) -> str:
        """Start one app; returns its base URL."""
        cfg = self.config.model_copy(deep=True)
        for key, value in server.items():
            setattr(cfg.server, key, value)
        runner = web.AppRunner(create_app(LoadedConfig(config=cfg, sources={}, path=None)))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        self.runners[base] = runner
        return base

    async def stop(self, base: str) -> None:
        """Shut one app down the way SIGTERM does (sessions closed, engine drained)."""
        await self.runners.pop(base).cleanup()


@pytest.fixture
async def servers(config: Config) -> AsyncIterator[Servers]:
    started = Servers(config)
    yield started
    for base in list(started.runners):
        await started.stop(base)


@pytest.fixture
async def browser(fake_camera: Path) -> AsyncIterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail("Debian's chromium is not installed: apt-get install -y chromium")
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={fake_camera}",
    ]
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        yield b
        await b.close()


async def open_page(browser: Browser, url: str, problems: list[str]) -> Page:
    """A fresh page (own storage) that records script errors into `problems`."""
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda exc: problems.append(f"{url}: {exc}"))
    await page.goto(url)
    await page.wait_for_selector("body[data-ready=true]")
    return page


async def wait_for_person(page: Page) -> dict[str, Any]:
    """Wait until the live view has drawn a person box; return the last detections reply."""
    await page.wait_for_function(
        """() => { const l = edgeViewer.live.last;
                   return l && l.detections.some((d) => d.label === 'person') && edgeViewer.live.drawn.length > 0; }""",
        timeout=TIMEOUT_MS,
    )
    reply: dict[str, Any] = await page.evaluate("() => edgeViewer.live.last")
    return reply


def screenshot_rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def near(pixel: np.ndarray, rgb: tuple[int, int, int], tol: int = 24) -> bool:
    return bool(np.all(np.abs(pixel - np.array(rgb)) <= tol))


async def assert_box_drawn(page: Page, reply: dict[str, Any], index: int) -> None:
    """The overlay canvas has the hazard colour on the box's edges and is clear inside; so does the screen."""
    canvas = await page.evaluate(
        """(i) => { const c = document.getElementById('live-overlay'); const b = edgeViewer.live.drawn[i];
                    const px = (x, y) => Array.from(c.getContext('2d').getImageData(Math.round(x), Math.round(y), 1, 1).data);
                    const mx = (b.x1 + b.x2) / 2, my = (b.y1 + b.y2) / 2;
                    return { top: px(mx, b.y1), left: px(b.x1, my), bottom: px(mx, b.y2), centre: px(mx, my),
                             dpr: window.devicePixelRatio }; }""",
        index,
    )
    assert canvas["dpr"] == 1
    for edge in ("top", "left", "bottom"):
        assert canvas[edge] == [*HAZARD_RGB, 255], (edge, canvas)
    assert canvas["centre"][3] == 0, canvas  # an outline, not a filled rectangle
    # Independently of the page's own bookkeeping: where the reply's box must appear on screen.
    rect = await page.locator("#live-overlay").bounding_box()
    assert rect is not None
    scale = rect["width"] / reply["image_size"][0]
    x1, y1, x2, y2 = (v * scale for v in reply["detections"][index]["box"])
    shot = screenshot_rgb(await page.screenshot())
    mid_x = round(rect["x"] + (x1 + x2) / 2)
    top_y = round(rect["y"] + y1)
    mid_y = round(rect["y"] + (y1 + y2) / 2)
    left_x = round(rect["x"] + x1)
    assert any(near(shot[top_y + d, mid_x], HAZARD_RGB) for d in range(-2, 3)), shot[
        top_y - 2 : top_y + 3, mid_x
    ]
    assert any(near(shot[mid_y, left_x + d], HAZARD_RGB) for d in range(-2, 3)), shot[
        mid_y, left_x - 2 : left_x + 3
    ]


async def test_camera_stream_shows_person_and_observer_logs_hazard(
    servers: Servers, browser: Browser, photos: dict[str, bytes], artifacts: Path
) -> None:
    base = await servers.start()
    problems: list[str] = []
    # The dashboard subscribes first, before the client exists, so it sees the hazard start.
    observer = await open_page(browser, f"{base}/?observe={CLIENT_ID}", problems)
    await observer.wait_for_selector("#observer[data-state=open]", timeout=TIMEOUT_MS)
    page = await open_page(browser, f"{base}/?client_id={CLIENT_ID}", problems)
    await page.click("#btn-camera")

    reply = await wait_for_person(page)
    assert reply["image_size"] == [480, 640]  # the camera's whole 810x1080 picture, scaled to 640 pixels
    assert await page.get_attribute("#live", "data-state") == "streaming"
    assert "person" in (await page.get_attribute("#live", "data-labels") or "").split(",")
    assert int(await page.get_attribute("#live", "data-boxes") or 0) >= 1

    # Same person, same place as the server finds in the original photograph.
    headers = {"Content-Type": "image/jpeg"}
    async with (
        ClientSession() as http,
        http.post(f"{base}/v1/detect", data=photos["bus"], headers=headers) as resp,
    ):
        assert resp.status == 200
        direct = await resp.json()
    ref = max((d for d in direct["detections"] if d["label"] == "person"), key=lambda d: d["confidence"])
    seen = max((d for d in reply["detections"] if d["label"] == "person"), key=lambda d: d["confidence"])
    scale = 810 / 480
    assert iou([v * scale for v in seen["box"]], ref["box"]) > 0.8

    await page.wait_for_function("() => edgeViewer.live.drawn.some((b) => b.hazard)", timeout=TIMEOUT_MS)
    reply = await page.evaluate("() => edgeViewer.live.last")
    hazard_box = await page.evaluate("() => edgeViewer.live.drawn.findIndex((b) => b.hazard)")
    await assert_box_drawn(page, reply, hazard_box)
    assert "person" in await page.inner_text("#live-hazards")

    await page.wait_for_function(
        "() => edgeViewer.live.stats.processed >= 3 && edgeViewer.live.stats.fps > 0"
    )
    await page.wait_for_function("() => document.getElementById('stat-latency').textContent.endsWith('ms')")
    assert await page.inner_text("#info-device") == "CPU"
    model = await page.inner_text("#info-model")
    assert "416\u00d7416" in model and "FP32" in model  # a multiplication sign; the precision in force
    assert await page.inner_text("#stat-client") == CLIENT_ID

    # The observer follows the same client over SSE: live boxes and the hazard in its log.
    await observer.wait_for_selector("#hazard-log li.started", timeout=TIMEOUT_MS)
    assert "person started" in await observer.inner_text("#hazard-log li.started")
    assert await observer.get_attribute("#observer", "data-hazards") == "person"
    await observer.wait_for_function("() => edgeViewer.observer.drawn.some((b) => b.label === 'person')")
    assert "person" in await observer.inner_text("#observer-hazards")
    # Recent hazards (GET /v1/events, refreshed every 5 s): the start with the server's snapshot of the frame.
    await observer.wait_for_function(
        "() => [...document.querySelectorAll('#recent-list li[data-state=started] img.snapshot')]"
        ".some((img) => img.complete && img.naturalWidth === 480 && img.naturalHeight === 640)",
        timeout=TIMEOUT_MS,
    )

    # The streaming page can watch itself too; a late observer learns of the active hazard from the replies.
    await page.click("#btn-observe-own")
    await page.wait_for_function("() => edgeViewer.observer.drawn.length > 0", timeout=TIMEOUT_MS)
    await page.wait_for_selector("#observer[data-hazards=person]", timeout=TIMEOUT_MS)
    await page.screenshot(path=artifacts / "viewer-live.png")
    await observer.screenshot(path=artifacts / "viewer-observer.png")
    assert await page.inner_text("#errors") == ""
    assert problems == []

    # Stopping the stream ends the session; the observer logs it and the hazard ends with it.
    await page.click("#btn-stop")
    await observer.wait_for_selector("#hazard-log li.ended", timeout=TIMEOUT_MS)
    assert await observer.get_attribute("#observer", "data-hazards") == ""


async def test_image_file_is_streamed_and_bad_files_are_reported(
    servers: Servers, browser: Browser, photos: dict[str, bytes], tmp_path: Path
) -> None:
    base = await servers.start()
    problems: list[str] = []
    page = await open_page(browser, base, problems)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    await page.set_input_files("#file-input", str(notes))
    await page.wait_for_selector("#errors li", timeout=TIMEOUT_MS)
    assert "notes.txt is not a video or image file" in await page.inner_text("#errors")
    assert await page.get_attribute("#live", "data-state") == "idle"

    photo = tmp_path / "zidane.jpg"
    photo.write_bytes(photos["zidane"])
    await page.set_input_files("#file-input", str(photo))
    await page.wait_for_function(
        "() => { const l = edgeViewer.live.last;"
        "        return l && l.detections.filter((d) => d.label === 'person').length === 2; }",
        timeout=TIMEOUT_MS,
    )
    reply = await page.evaluate("() => edgeViewer.live.last")
    assert reply["image_size"] == [640, 360]  # 1280x720 scaled to the page's 640-pixel frames
    assert await page.get_attribute("#live", "data-source") == "image"
    assert await page.evaluate("() => edgeViewer.live.drawn.length") == len(reply["detections"])
    assert await page.inner_text("#errors") == ""  # a good source clears the earlier error

    # The confidence slider reconfigures the session: only the confident person is left.
    await page.fill("#confidence", "0.8")
    await page.wait_for_function(
        "() => { const l = edgeViewer.live.last;"
        "        return l.detections.length === 1 && l.detections[0].confidence >= 0.8; }",
        timeout=TIMEOUT_MS,
    )
    assert await page.input_value("#confidence") == "0.8"

    # The server going away is said plainly, and the page keeps trying to reconnect.
    await servers.stop(base)
    await page.wait_for_selector("#errors li", timeout=TIMEOUT_MS)
    assert "Detection stream closed" in await page.inner_text("#errors")
    assert "Reconnecting" in await page.inner_text("#errors")
    assert await page.get_attribute("#live", "data-state") in ("error", "connecting")
    assert problems == []


async def test_token_is_asked_for_and_wrong_tokens_are_reported(servers: Servers, browser: Browser) -> None:
    base = await servers.start(token="s3cret-token")
    problems: list[str] = []
    page = await open_page(browser, f"{base}/?client_id=guarded", problems)
    await page.click("#btn-camera")
    dialog = page.locator("#token-dialog")
    await dialog.wait_for(state="visible", timeout=TIMEOUT_MS)
    assert "requires an access token" in await page.inner_text("#token-reason")
    assert await page.get_attribute("#live", "data-state") == "auth"

    await page.fill("#token-input", "wrong")
    await page.click("#token-ok")
    await page.wait_for_function(
        "() => document.getElementById('token-dialog').open "
        "&& document.getElementById('token-reason').textContent.includes('rejected')",
        timeout=TIMEOUT_MS,
    )
    await page.fill("#token-input", "s3cret-token")
    await page.click("#token-ok")
    await wait_for_person(page)
    assert not await dialog.is_visible()

    # Cancelling the prompt leaves a plain error instead of a silent failure.
    other = await open_page(browser, f"{base}/?observe=guarded", problems)
    await other.locator("#token-dialog").wait_for(state="visible", timeout=TIMEOUT_MS)
    await other.click("#token-cancel")
    await other.wait_for_selector("#errors li", timeout=TIMEOUT_MS)
    assert "requires an access token" in await other.inner_text("#errors")

    # ?token= in the page address works for dashboards and is removed from the address bar.
    dash = await open_page(browser, f"{base}/?observe=guarded&token=s3cret-token", problems)
    await dash.wait_for_function("() => edgeViewer.observer.last !== null", timeout=TIMEOUT_MS)
    assert "token" not in dash.url
    assert problems == []


async def test_sse_parser_handles_any_chunking(browser: Browser) -> None:
    """The page's SSE parser gives the same events however the network splits the stream."""
    app = web.Application()
    setup_viewer(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        page = await browser.new_page()
        await page.goto(f"http://127.0.0.1:{runner.addresses[0][1]}/")
        stream = (
            ': keep-alive\n\nid: 7\nevent: hazard\ndata: {"rule":\r\ndata: "person"}\r\n\r\n'
            "id: 8\rdata\r\r: comment\nevent: fps\ndata: 5\n\n"
        )
        expected = [
            {"event": "hazard", "data": '{"rule":\n"person"}', "id": "7"},
            {"event": "message", "data": "", "id": "8"},
            {"event": "fps", "data": "5", "id": None},
        ]
        for size in (1, 2, 3, 5, 7, len(stream)):
            chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
            events = await page.evaluate(
                """async (chunks) => { const { SseParser } = await import('/viewer/events.js');
                                       const p = new SseParser(); return chunks.flatMap((c) => p.feed(c)); }""",
                chunks,
            )
            assert events == expected, size
    finally:
        await runner.cleanup()
