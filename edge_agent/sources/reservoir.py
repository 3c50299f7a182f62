"""On-site calibration frames: a bounded reservoir sample of the real frames the agent's sources admit.

With `calibration.keep_frames = N` every admitted frame (at most one per `min_interval` seconds) is offered
to Algorithm R: the first N are kept, later ones replace a random kept one with probability N/seen, so the
folder always holds a uniform sample of everything seen. Files are 0600 JPEGs under the state directory,
written by one worker thread (never on the loop); `edge-agent model quantize --from-frames` reads them.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import simplejpeg
from aiohttp import web

from ..config import CalibrationConfig
from ..inference.contract import Frame, JpegFrame
from ..runtime import AGENT
from .registry import SOURCES

log = logging.getLogger(__name__)
STATE_FILE = "reservoir.json"  # how many frames were offered, so a restart keeps the sample uniform


def frame_path(folder: Path, slot: int) -> Path:
    """The file of one reservoir slot."""
    return folder / f"frame-{slot:05d}.jpg"


class Reservoir:
    """Algorithm R over admitted frames; `offer` runs on the loop and costs a clock read when not sampling."""

    def __init__(self, cfg: CalibrationConfig, rng: random.Random | None = None) -> None:
        self.size = cfg.keep_frames
        self.folder = Path(cfg.dir)
        self.min_interval = cfg.min_interval
        self._rng = rng or random.Random()
        self._last = -float("inf")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edge-agent-reservoir")
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.seen = self._load_seen()

    def _load_seen(self) -> int:
        kept = sum(1 for s in range(self.size) if frame_path(self.folder, s).is_file())
        try:
            seen = int(json.loads((self.folder / STATE_FILE).read_text())["seen"])
        except (OSError, ValueError, KeyError, TypeError):
            seen = 0
        return max(seen, kept)

    def offer(self, frame: Frame) -> None:
        """Consider one admitted frame for the sample."""
        now = time.monotonic()
        if now - self._last < self.min_interval:
            return
        self._last = now
        self.seen += 1
        slot = self.seen - 1 if self.seen <= self.size else self._rng.randrange(self.seen)
        if slot < self.size:
            self._writer.submit(self._write, frame, slot, self.seen)

    def _write(self, frame: Frame, slot: int, seen: int) -> None:
        """Worker thread: the frame as a 0600 JPEG in its slot (atomically), then the offered count."""
        try:
            data = frame.data if isinstance(frame, JpegFrame) else _encode(frame.pixels)
            _write_private(frame_path(self.folder, slot), data)
            _write_private(self.folder / STATE_FILE, json.dumps({"seen": seen}).encode())
        except OSError as exc:
            log.warning("calibration frame not kept: %s", exc)

    def close(self) -> None:
        """Finish pending writes."""
        self._writer.shutdown(wait=True)


def _encode(pixels: np.ndarray) -> bytes:
    return bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(pixels[..., :3]), quality=90, colorspace="RGB"))


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


async def reservoir_ctx(app: web.Application) -> AsyncIterator[None]:
    """When calibration.keep_frames > 0, tap the scheduler's admitted frames into the reservoir."""
    cfg = app[AGENT].config.calibration
    if not cfg.keep_frames:
        yield
        return
    try:
        reservoir = Reservoir(cfg)
    except OSError as exc:
        log.warning("calibration.keep_frames is set but %s is unusable (%s): keeping no frames", cfg.dir, exc)
        yield
        return
    app[SOURCES].scheduler.tap = reservoir.offer
    log.info("keeping a sample of %d frames in %s (%d seen so far)", cfg.keep_frames, cfg.dir, reservoir.seen)
    yield
    app[SOURCES].scheduler.tap = None
    reservoir.close()
