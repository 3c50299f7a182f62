"""Decoding and letterboxing into the model's RGBX tensor, checked against a plain reference; NMS edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import simplejpeg

from edge_agent.inference.frames import PAD_VALUE, FrameBuffers
from edge_agent.inference.models.decoders import nms
from tests.conftest import encode


def reference_letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour, aspect-preserving resize onto a grey canvas, written the obvious way."""
    dst_w, dst_h = size
    src_h, src_w = image.shape[:2]
    scale = min(dst_w / src_w, dst_h / src_h)
    new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    dx, dy = (dst_w - new_w) // 2, (dst_h - new_h) // 2
    canvas = np.full((dst_h, dst_w, 3), PAD_VALUE, np.uint8)
    for y in range(new_h):
        sy = min(int((y + 0.5) / scale), src_h - 1)
        for x in range(new_w):
            canvas[dy + y, dx + x] = image[sy, min(int((x + 0.5) / scale), src_w - 1)]
    return canvas


@pytest.mark.parametrize(
    "shape",
    [(48, 64), (64, 48), (40, 40), (30, 7), (7, 30), (50, 200), (33, 61)],
    ids=["landscape", "portrait", "square", "tall-sliver", "wide-sliver", "very-wide", "odd"],
)
def test_letterbox_matches_reference(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, (*shape, 3), np.uint8)
    buffers = FrameBuffers(16)
    target = np.zeros((1, 32, 40, 4), np.uint8)
    decoded = np.concatenate([image, np.zeros((*shape, 1), np.uint8)], axis=2)
    buffers.pixels = np.empty(shape[0] * shape[1] + 1, np.uint32)
    buffers.pixels[:-1] = decoded.reshape(-1).view(np.uint32)
    view = buffers.pixels[:-1].view(np.uint8).reshape(*shape, 4)
    scale, dx, dy = buffers.letterbox_into(view, target)
    assert np.array_equal(target[0, ..., :3], reference_letterbox(image, (40, 32)))
    assert scale == pytest.approx(min(40 / shape[1], 32 / shape[0]))
    assert (dx == 0) or (dy == 0)


def test_layout_change_repaints_bars_and_decoded_photo_matches() -> None:
    rng = np.random.default_rng(3)
    wide = rng.integers(0, 256, (120, 320, 3), np.uint8)
    tall = rng.integers(0, 256, (320, 120, 3), np.uint8)
    buffers = FrameBuffers(64)
    target = np.zeros((1, 256, 256, 4), np.uint8)  # big enough that no DCT scaling applies
    for image in (wide, tall, wide):  # stale pixels of the previous layout must not survive
        jpeg = encode(image, quality=95)
        h, w = image.shape[:2]
        decoded = buffers.decode_into(jpeg, w, h, 256, 256)
        assert decoded.shape == (h, w, 4)
        expected = simplejpeg.decode_jpeg(jpeg, colorspace="RGB", fastdct=True, fastupsample=True)
        assert np.array_equal(decoded[..., :3], expected)
        buffers.letterbox_into(decoded, target)
        assert np.array_equal(target[0, ..., :3], reference_letterbox(expected, (256, 256)))


def test_large_frames_are_dct_scaled_before_the_letterbox() -> None:
    image = np.random.default_rng(5).integers(0, 256, (480, 640, 3), np.uint8)
    decoded = FrameBuffers(16).decode_into(encode(image), 640, 480, 160, 160)
    assert decoded.shape[:2] == (120, 160)  # 1/4: still covers the 160x120 letterboxed region


def test_nms_keeps_best_per_class_and_handles_tiny_inputs() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.6, 0.9, 0.8, 0.7], np.float32)
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, classes, 0.5, 10).tolist() == [1, 2, 3]  # 0 overlaps 1 (same class)
    assert nms(boxes, scores, classes, 0.5, 2).tolist() == [1, 2]
    assert nms(boxes[:1], scores[:1], classes[:1], 0.5, 10).tolist() == [0]
    assert nms(boxes[:0], scores[:0], classes[:0], 0.5, 10).tolist() == []
