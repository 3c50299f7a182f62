"""JPEG checks and decoding into pooled buffers, and letterboxing into a preallocated input tensor."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import simplejpeg

from ..errors import DimensionsTooLarge, EmptyFrame, FrameTooLarge, NotJpeg, TruncatedJpeg

PAD_VALUE = 114  # neutral grey for letterbox bars, as YOLO training used
PAD_PIXEL = np.uint32(PAD_VALUE * 0x01010101)  # the same grey as one RGBX pixel


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
    """One infer request's decode buffer; it grows rarely (bigger frames) and is reused for every frame.

    Frames are decoded as RGBX, so a pixel is one uint32 and the letterbox is a single gather of 4-byte
    items (measured: half the time of gathering 3-byte RGB pixels); the model's PrePostProcessor drops X.
    """

    def __init__(self, capacity_pixels: int) -> None:
        self.pixels = np.empty(capacity_pixels + 1, np.uint32)  # +1: the pad pixel the bars gather from
        self.last_box: tuple[int, int, int, int] | None = None

    def decode_into(self, data: bytes, width: int, height: int, target_w: int, target_h: int) -> np.ndarray:
        """Decode RGBX into the pooled buffer, DCT-scaled by 1/2, 1/4 or 1/8 when the frame is that much larger."""
        if width * height + 1 > self.pixels.size:
            self.pixels = np.empty(width * height + 1, np.uint32)
        factor = dct_factor(width, height, target_w, target_h)
        try:
            image: np.ndarray = simplejpeg.decode_jpeg(
                data,
                colorspace="RGBX",
                min_width=-(-width // factor),
                min_height=-(-height // factor),
                buffer=self.pixels.view(np.uint8),
                fastdct=True,
                fastupsample=True,
            )
        except ValueError as exc:
            raise TruncatedJpeg(f"JPEG data is corrupt or truncated: {exc}") from None
        return image

    def load_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Copy decoded RGB or RGBX pixels [H, W, 3|4] into the pooled buffer, as `decode_into` would leave them."""
        height, width = pixels.shape[:2]
        if width * height + 1 > self.pixels.size:
            self.pixels = np.empty(width * height + 1, np.uint32)
        image = self.pixels[: width * height].view(np.uint8).reshape(height, width, 4)
        image[..., : pixels.shape[2]] = pixels[..., :4]
        return image

    def letterbox_into(self, image: np.ndarray, target: np.ndarray) -> tuple[float, int, int]:
        """Nearest-neighbour resize of a decoded frame, keeping aspect ratio, into target[0] (H, W, 4 u8).

        Returns scale, dx, dy. `image` must be the array `decode_into` returned last.
        """
        src_h, src_w = image.shape[:2]
        dst_h, dst_w = target.shape[1:3]
        index, new_w, new_h, dx, dy, scale = _plan(src_h, src_w, dst_h, dst_w)
        out = target.view(np.uint32).reshape(dst_h, dst_w)
        box = (dx, dy, new_w, new_h)
        if self.last_box != box:  # the bars above and below only need painting when the layout changes
            out[:dy].fill(PAD_PIXEL)  # only the bar rows: the gather below writes every other row
            out[dy + new_h :].fill(PAD_PIXEL)
            self.last_box = box
        self.pixels[src_h * src_w] = PAD_PIXEL  # side bars gather this pixel (see _plan)
        np.take(self.pixels, index, out=out[dy : dy + new_h].reshape(-1), mode="clip")
        return scale, dx, dy


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


@lru_cache(maxsize=8)
def _plan(src_h: int, src_w: int, dst_h: int, dst_w: int) -> tuple[np.ndarray, int, int, int, int, float]:
    """Flat source index of every pixel in the target rows the image covers (side bars: the pad pixel)."""
    scale = min(dst_w / src_w, dst_h / src_h)
    new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    dx, dy = (dst_w - new_w) // 2, (dst_h - new_h) // 2
    ys = np.minimum(((np.arange(new_h) + 0.5) / scale).astype(np.intp), src_h - 1)
    xs = np.full(dst_w, src_h * src_w, np.intp)  # the pad pixel, stored just after the image
    xs[dx : dx + new_w] = np.minimum(((np.arange(new_w) + 0.5) / scale).astype(np.intp), src_w - 1)
    index = np.where(xs[None, :] == src_h * src_w, xs[None, :], ys[:, None] * src_w + xs[None, :]).ravel()
    # Left writable: np.take copies a read-only index array on every call (numpy requires WRITEABLE).
    return index, new_w, new_h, dx, dy, scale
