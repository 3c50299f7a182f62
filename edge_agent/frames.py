"""JPEG checks and decoding into pooled buffers, and letterboxing into a preallocated input tensor."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import simplejpeg

from .errors import DimensionsTooLarge, EmptyFrame, FrameTooLarge, NotJpeg, TruncatedJpeg

PAD_VALUE = 114  # neutral grey for letterbox bars, as YOLO training used


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a frame maps into the model input: scale and offsets, to map boxes back."""

    scale: float
    dx: int
    dy: int
    frame_w: int
    frame_h: int


def check_jpeg(data: bytes, max_bytes: int, max_pixels: int) -> tuple[int, int]:
    """Validate size and header without decoding; return (width, height) or raise a FrameError."""
    if not data:
        raise EmptyFrame("frame is empty (0 bytes)")
    if len(data) > max_bytes:
        raise FrameTooLarge(f"frame is {len(data)} bytes, the limit is {max_bytes}")
    if data[:2] != b"\xff\xd8":
        raise NotJpeg("frame is not a JPEG (no SOI marker 0xFFD8 at the start)")
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise TruncatedJpeg(f"JPEG header is unreadable: {exc}") from None
    if width <= 0 or height <= 0:
        raise TruncatedJpeg(f"JPEG header declares {width}x{height}")
    if width * height > max_pixels:
        raise DimensionsTooLarge(f"JPEG declares {width}x{height}, above the limit of {max_pixels} pixels")
    return width, height


class FrameBuffers:
    """One infer request's decode buffer; it grows rarely (bigger frames) and is reused for every frame."""

    def __init__(self, capacity_pixels: int) -> None:
        self.decode = np.empty(capacity_pixels * 3, np.uint8)
        self.rows = np.empty(capacity_pixels * 3, np.uint8)  # scratch for the separable resize
        self.cols = np.empty(0, np.uint8)  # scratch when the target region is not contiguous (pillarbox)
        self.last_box: tuple[int, int, int, int] | None = None

    def decode_into(self, data: bytes, width: int, height: int, target_w: int, target_h: int) -> np.ndarray:
        """Decode RGB into the pooled buffer, DCT-scaled by 1/2, 1/4 or 1/8 when the frame is that much larger."""
        if width * height * 3 > self.decode.size:
            self.decode = np.empty(width * height * 3, np.uint8)
        factor = dct_factor(width, height, target_w, target_h)
        try:
            image: np.ndarray = simplejpeg.decode_jpeg(
                data, colorspace="RGB", min_width=-(-width // factor), min_height=-(-height // factor),
                buffer=self.decode, fastdct=True, fastupsample=True,
            )
        except ValueError as exc:
            raise TruncatedJpeg(f"JPEG data is corrupt or truncated: {exc}") from None
        return image


def dct_factor(width: int, height: int, target_w: int, target_h: int) -> int:
    """Largest power-of-two downscale that still covers the letterboxed size.

    libjpeg-turbo scales by n/8 in the IDCT; 1/2, 1/4 and 1/8 are much cheaper than a full decode, while
    factors like 5/8 cost more than decoding at full size (measured), so only powers of two are used.
    """
    scale = min(target_w / width, target_h / height)
    need_w, need_h = width * scale, height * scale
    factor = 1
    while factor < 8 and width / (factor * 2) >= need_w and height / (factor * 2) >= need_h:
        factor *= 2
    return factor


@lru_cache(maxsize=32)
def _plan(src_h: int, src_w: int, dst_h: int, dst_w: int) -> tuple[np.ndarray, np.ndarray, int, int, int, int, float]:
    scale = min(dst_w / src_w, dst_h / src_h)
    new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    dx, dy = (dst_w - new_w) // 2, (dst_h - new_h) // 2
    ys = np.minimum(((np.arange(new_h) + 0.5) / scale).astype(np.int64), src_h - 1)
    xs = np.minimum(((np.arange(new_w) + 0.5) / scale).astype(np.int64), src_w - 1)
    ys.setflags(write=False)
    xs.setflags(write=False)
    return ys, xs, new_w, new_h, dx, dy, scale


def letterbox_into(image: np.ndarray, target: np.ndarray, buffers: FrameBuffers) -> tuple[float, int, int]:
    """Nearest-neighbour resize keeping aspect ratio into target[0] (H, W, 3 u8); returns scale, dx, dy."""
    src_h, src_w = image.shape[:2]
    dst_h, dst_w = target.shape[1:3]
    ys, xs, new_w, new_h, dx, dy, scale = _plan(src_h, src_w, dst_h, dst_w)
    box = (dx, dy, new_w, new_h)
    if buffers.last_box != box:  # bars only need repainting when the layout changes
        target.fill(PAD_VALUE)
        buffers.last_box = box
    region = target[0, dy : dy + new_h, dx : dx + new_w]
    if buffers.rows.size < new_h * src_w * 3:
        buffers.rows = np.empty(new_h * src_w * 3, np.uint8)
    rows = buffers.rows[: new_h * src_w * 3].reshape(new_h, src_w, 3)
    # Separable nearest-neighbour: pick rows, then columns; both write into preallocated memory.
    np.take(image, ys, axis=0, out=rows, mode="clip")
    if region.flags.c_contiguous:
        np.take(rows, xs, axis=1, out=region, mode="clip")
    else:  # numpy would buffer a strided `out` through a fresh temporary on every call
        if buffers.cols.size < new_h * new_w * 3:
            buffers.cols = np.empty(new_h * new_w * 3, np.uint8)
        cols = buffers.cols[: new_h * new_w * 3].reshape(new_h, new_w, 3)
        np.take(rows, xs, axis=1, out=cols, mode="clip")
        region[...] = cols
    return scale, dx, dy
