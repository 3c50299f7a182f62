"""Protocol 1: parsing the WebSocket client's text messages (replies are built in sources/replies.py)."""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any

from ..replies import BadMessage

PROTOCOL = 1
_DATA_URL = "base64,"


class BadBase64(BadMessage):
    """A frame message whose image is not valid base64."""

    code = "bad_base64"

    def __init__(self, message: str, frame_id: int | None) -> None:
        super().__init__(message)
        self.frame_id = frame_id


class MessageTooLarge(BadMessage):
    """A text message above the configured size limit."""

    code = "message_too_large"


@dataclass(frozen=True, slots=True)
class FrameMsg:
    """A text-form frame: base64 JPEG plus the client's frame_id and timestamp, echoed back."""

    image: bytes
    frame_id: int | None
    timestamp: float | None


@dataclass(frozen=True, slots=True)
class ConfigMsg:
    """Requested changes; None means unchanged (classes=[] or null clears the class filter)."""

    fps_limit: float | None
    confidence: float | None
    iou: float | None
    classes: list[str | int] | None
    clear_classes: bool


@dataclass(frozen=True, slots=True)
class PingMsg:
    """Liveness check, answered by pong (echoing `timestamp` when given)."""

    timestamp: float | None


Message = FrameMsg | ConfigMsg | PingMsg


def _number(obj: dict[str, Any], key: str, lo: float | None = None, hi: float | None = None) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadMessage(f"'{key}' must be a number, got {type(value).__name__}")
    if not math.isfinite(value):  # 1e999 parses as infinity
        raise BadMessage(f"'{key}' must be a finite number, got {value}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise BadMessage(f"'{key}' must be in [{lo}, {hi}], got {value}")
    return float(value)


def _frame(obj: dict[str, Any]) -> FrameMsg:
    frame_id = obj.get("frame_id")
    if frame_id is not None and (isinstance(frame_id, bool) or not isinstance(frame_id, int)):
        raise BadMessage(f"'frame_id' must be an integer, got {type(frame_id).__name__}")
    timestamp = _number(obj, "timestamp")
    image = obj.get("image")
    if not isinstance(image, str):
        raise BadMessage("'image' must be a base64 JPEG string")
    # Browsers often send a data URL (data:image/jpeg;base64,...).
    if image.startswith("data:"):
        image = image[image.find(_DATA_URL) + len(_DATA_URL) :] if _DATA_URL in image else ""
    try:
        data = base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadBase64(f"'image' is not valid base64: {exc}", frame_id) from None
    return FrameMsg(data, frame_id, timestamp)


def _config(obj: dict[str, Any], max_fps: float) -> ConfigMsg:
    unknown = set(obj) - {"type", "fps_limit", "confidence", "iou", "classes"}
    if unknown:
        raise BadMessage(f"unknown config field(s): {', '.join(sorted(unknown))}")
    fps = _number(obj, "fps_limit", 0.1, max_fps)
    classes = obj.get("classes")
    clear = "classes" in obj and not classes
    if classes is not None and (
        not isinstance(classes, list)
        or not all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes)
    ):
        raise BadMessage("'classes' must be a list of label names or class ids")
    return ConfigMsg(
        fps, _number(obj, "confidence", 0.0, 1.0), _number(obj, "iou", 0.0, 1.0), classes or None, clear
    )


def _non_finite(name: str) -> float:
    # Python's json accepts NaN and Infinity; they are not JSON, and echoing them breaks JSON.parse.
    raise ValueError(f"{name} is not a JSON number")


def parse_text(text: str, max_fps: float) -> Message:
    """Parse one client text message, raising BadMessage with a specific reason."""
    try:
        obj = json.loads(text, parse_constant=_non_finite)
    except ValueError as exc:
        raise BadMessage(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise BadMessage("not valid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise BadMessage(f"expected a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    if kind == "frame":
        return _frame(obj)
    if kind == "config":
        return _config(obj, max_fps)
    if kind == "ping":
        return PingMsg(_number(obj, "timestamp"))
    if kind is None:
        raise BadMessage("missing 'type'")
    raise BadMessage(f"unknown message type {kind!r} (expected frame, config or ping)")
