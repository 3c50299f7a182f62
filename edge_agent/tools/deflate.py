"""Measure what per-message deflate would save and cost on WebSocket messages (why it is off)."""

from __future__ import annotations

import time
import zlib

import numpy as np
import simplejpeg


def synthetic_frame(width: int = 640, height: int = 480) -> bytes:
    """A camera-like JPEG (4:2:0, as cameras and browsers send): gradients plus sensor noise (deterministic)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(7)
    img = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    img += rng.normal(0, 6, img.shape)
    pixels = np.clip(img, 0, 255).astype(np.uint8)
    jpeg: bytes = simplejpeg.encode_jpeg(pixels, quality=85, colorspace="RGB", colorsubsampling="420")
    return jpeg


def deflate_report(payloads: dict[str, bytes]) -> None:
    """What permessage-deflate (raw deflate, sync flush) would save and cost per message."""
    print(f"{'payload':22}{'bytes':>9}{'deflated':>10}{'ratio':>8}{'deflate ms':>12}{'inflate ms':>12}")
    for name, data in payloads.items():
        n = 200 if len(data) < 10_000 else 20
        t0 = time.perf_counter()
        for _ in range(n):
            c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
            out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        t1 = time.perf_counter()
        for _ in range(n):
            zlib.decompressobj(-15).decompress(out)
        t2 = time.perf_counter()
        ratio = len(out) / len(data)
        print(
            f"{name:22}{len(data):9d}{len(out):10d}{ratio:8.3f}{(t1 - t0) / n * 1e3:12.3f}{(t2 - t1) / n * 1e3:12.3f}"
        )


SAMPLE_REPLY = (
    b'{"type":"detections","frame_id":123,"timestamp":1795754453.655588,"image_size":[1280,720],"detections":'
    b'[{"label":"person","class_id":0,"confidence":0.9135,"box":[734.5,18.5,1144.9,720.0]},{"label":"person",'
    b'"class_id":0,"confidence":0.62,"box":[313.5,211.7,797.0,720.0]},{"label":"tie","class_id":27,'
    b'"confidence":0.37,"box":[1005.1,332.0,1024.2,397.3]}],"hazards":[{"rule":"person","detections":[0,1],'
    b'"confidence":0.9135,"active":true}],"timing_ms":{"queue":0.06,"decode":2.92,"preprocess":0.97,'
    b'"inference":95.71,"postprocess":1.39,"total":101.14}}'
)
