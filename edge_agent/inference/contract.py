"""Plain data passed between the engine and its users (the engine's contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EdgeAgentError


@dataclass(frozen=True, slots=True)
class DetectParams:
    """Per-request overrides; None means the configured default."""

    confidence: float | None = None
    iou: float | None = None
    classes: frozenset[int] | None = None


@dataclass(frozen=True, slots=True)
class JpegFrame:
    """A checked JPEG: its bytes with the size read from its header (the header is parsed once)."""

    data: bytes
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class PixelFrame:
    """Decoded pixels, [H, W, 3] RGB or [H, W, 4] RGBX uint8 (cameras): they go straight into the letterbox."""

    pixels: np.ndarray

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return int(self.pixels.shape[0])


Frame = JpegFrame | PixelFrame


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object; box is [x1, y1, x2, y2] in the original frame's pixels."""

    label: str
    class_id: int
    confidence: float
    box: tuple[float, float, float, float]

    def to_json(self) -> dict[str, Any]:
        """JSON shape used by every API: {label, class_id, confidence, box}."""
        return {
            "label": self.label,
            "class_id": self.class_id,
            "confidence": round(self.confidence, 4),
            "box": [round(v, 1) for v in self.box],
        }


@dataclass(slots=True)
class Timings:
    """Per-stage wall times of one frame in milliseconds, built once by the engine.

    `queue` is everything from the frame's arrival to the start of its decode (scheduler and request
    wait); `total` is arrival to result, so every report of latency measures the same thing.
    """

    queue: float = 0.0
    decode: float = 0.0
    preprocess: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0
    total: float = 0.0

    def to_json(self) -> dict[str, float]:
        """Rounded stage times for JSON replies."""
        return {k: round(getattr(self, k), 2) for k in STAGES}


STAGES = ("queue", "decode", "preprocess", "inference", "postprocess", "total")


@dataclass(slots=True)
class Result:
    """Detections of one frame with its size and stage timings."""

    detections: list[Detection]
    image_size: tuple[int, int]
    timings: Timings = field(default_factory=Timings)


@dataclass(frozen=True, slots=True)
class Dropped:
    """The frame was not processed: `backpressure` (a newer frame replaced it), `rate` or `closed`."""

    reason: str


# What became of one frame: detections, a drop, or the error it was answered with.
Outcome = Result | Dropped | EdgeAgentError


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a loaded model is: name, input size, labels, output family, file digest, precision."""

    name: str
    path: str
    family: str
    input_size: tuple[int, int]
    labels: tuple[str, ...]
    sha256: str
    precision: str = "fp32"  # "int8" for a quantized model that passed the accuracy gate


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    """The device asked for, the one compiled for, what really executes, and why."""

    requested: str
    selected: str
    executing: tuple[str, ...]
    reason: str
    fallback: bool
