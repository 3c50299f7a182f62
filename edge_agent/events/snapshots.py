"""Hazard snapshots: the triggering frame as a JPEG with its boxes drawn, in a bounded directory."""

from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import simplejpeg

from ..inference.contract import Detection, Frame, JpegFrame

log = logging.getLogger(__name__)

SNAPSHOT_ID = re.compile(r"[0-9a-f]{16}")
BOX_RGB = (255, 32, 32)
_SUFFIX = ".jpg"


def frame_pixels(frame: Frame) -> np.ndarray:
    """RGB pixels of a frame (a JPEG is decoded; RGBX camera pixels lose their fourth channel)."""
    if isinstance(frame, JpegFrame):
        return np.asarray(simplejpeg.decode_jpeg(frame.data, colorspace="RGB"))
    return np.ascontiguousarray(frame.pixels[..., :3])


def line_width(width: int, height: int) -> int:
    """Box outline thickness: about 0.4% of the larger side, at least 2 px."""
    return max(2, round(max(width, height) / 250))


def draw_boxes(
    pixels: np.ndarray, detections: Sequence[Detection], color: tuple[int, int, int] = BOX_RGB
) -> None:
    """Draw each detection's box outline into the RGB array, clipped to the image."""
    h, w = pixels.shape[:2]
    t = line_width(w, h)
    for det in detections:
        x1, y1, x2, y2 = (round(v) for v in det.box)
        x1, x2 = max(0, min(x1, w - 1)), max(0, min(x2, w))
        y1, y2 = max(0, min(y1, h - 1)), max(0, min(y2, h))
        if x2 <= x1 or y2 <= y1:
            continue
        pixels[y1 : min(y1 + t, y2), x1:x2] = color
        pixels[max(y2 - t, y1) : y2, x1:x2] = color
        pixels[y1:y2, x1 : min(x1 + t, x2)] = color
        pixels[y1:y2, max(x2 - t, x1) : x2] = color


def render(frame: Frame, detections: Sequence[Detection], quality: int) -> bytes:
    """The frame as a JPEG with the detections' boxes drawn."""
    pixels = frame_pixels(frame).copy()
    draw_boxes(pixels, detections)
    return bytes(simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="RGB"))


class SnapshotDir:
    """A directory of <id>.jpg files bounded by count and bytes, oldest removed first (worker thread only)."""

    def __init__(self, path: Path, max_count: int, max_bytes: int) -> None:
        self.path = path
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._files: OrderedDict[str, int] = OrderedDict()
        self.bytes = 0
        self.removed = 0

    def open(self) -> None:
        """Create the directory and index what an earlier run left, oldest first."""
        self.path.mkdir(parents=True, exist_ok=True)
        found = []
        for entry in os.scandir(self.path):
            name = entry.name
            if name.endswith(_SUFFIX) and SNAPSHOT_ID.fullmatch(name[: -len(_SUFFIX)]):
                st = entry.stat()
                found.append((st.st_mtime_ns, name[: -len(_SUFFIX)], st.st_size))
        for _, sid, size in sorted(found):
            self._files[sid] = size
            self.bytes += size
        self._trim()

    def __len__(self) -> int:
        return len(self._files)

    def file(self, snapshot_id: str) -> Path | None:
        """Path of a kept snapshot, None for an unknown or malformed id."""
        if not SNAPSHOT_ID.fullmatch(snapshot_id) or snapshot_id not in self._files:
            return None
        return self.path / f"{snapshot_id}{_SUFFIX}"

    def save(self, snapshot_id: str, frame: Frame, detections: Sequence[Detection], quality: int) -> int:
        """Render and store one snapshot (atomically: written aside, then renamed); returns its size."""
        data = render(frame, detections, quality)
        final = self.path / f"{snapshot_id}{_SUFFIX}"
        tmp = final.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, final)
        self._files[snapshot_id] = len(data)
        self.bytes += len(data)
        self._trim()
        return len(data)

    def read(self, snapshot_id: str) -> bytes | None:
        """The JPEG bytes of a kept snapshot."""
        path = self.file(snapshot_id)
        try:
            return path.read_bytes() if path is not None else None
        except FileNotFoundError:
            return None

    def _trim(self) -> None:
        while self._files and (len(self._files) > self.max_count or self.bytes > self.max_bytes):
            sid, size = self._files.popitem(last=False)
            self.bytes -= size
            self.removed += 1
            try:
                (self.path / f"{sid}{_SUFFIX}").unlink()
            except FileNotFoundError:
                log.debug("snapshot %s was already gone", sid)
