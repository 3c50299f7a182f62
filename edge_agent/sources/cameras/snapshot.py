"""The latest frame of a camera as JPEG, optionally with its detections drawn (numpy + simplejpeg)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import simplejpeg

from ...inference.contract import Frame, JpegFrame

BOX_RGB = (255, 64, 32)
QUALITY = 85


def snapshot_jpeg(frame: Frame, detections: Sequence[dict[str, Any]], boxes: bool) -> bytes:
    """JPEG bytes of the frame; a JPEG camera's own bytes are returned as they are when no boxes are drawn."""
    if isinstance(frame, JpegFrame):
        if not boxes:
            return frame.data
        pixels = np.array(simplejpeg.decode_jpeg(frame.data, colorspace="RGB"))
    else:
        pixels = np.array(frame.pixels[..., :3])
    if boxes:
        draw_boxes(pixels, [d["box"] for d in detections])
    return bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=QUALITY, colorspace="RGB"))


def draw_boxes(pixels: np.ndarray, boxes: Sequence[Sequence[float]], thickness: int = 3) -> None:
    """Draw rectangle outlines [x1, y1, x2, y2] in place."""
    height, width = pixels.shape[:2]
    colour = np.array(BOX_RGB, np.uint8)
    for box in boxes:
        x1, y1, x2, y2 = (round(v) for v in box)
        x1, x2 = max(0, min(x1, width - 1)), max(0, min(x2, width))
        y1, y2 = max(0, min(y1, height - 1)), max(0, min(y2, height))
        if x2 <= x1 or y2 <= y1:
            continue
        t = max(1, min(thickness, (x2 - x1) // 2, (y2 - y1) // 2))
        pixels[y1 : y1 + t, x1:x2] = colour
        pixels[y2 - t : y2, x1:x2] = colour
        pixels[y1:y2, x1 : x1 + t] = colour
        pixels[y1:y2, x2 - t : x2] = colour
