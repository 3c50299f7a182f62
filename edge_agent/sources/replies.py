"""Replies every source gives for a frame: detections, dropped, error; class names to ids."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import EdgeAgentError
from ..inference.contract import Detection, Result
from ..inference.engine import Engine


class BadMessage(EdgeAgentError):
    """A message or request that is not valid; the connection stays open."""

    code = "bad_message"


def resolve_classes(requested: Sequence[str | int], labels: Sequence[str]) -> frozenset[int]:
    """Map label names or ids to class ids, rejecting unknown ones."""
    index = {name: i for i, name in enumerate(labels)}
    ids: set[int] = set()
    for item in requested:
        if isinstance(item, int):
            if not 0 <= item < len(labels):
                raise BadMessage(f"class id {item} out of range (model has {len(labels)} classes)")
            ids.add(item)
        elif item in index:
            ids.add(index[item])
        else:
            raise BadMessage(f"unknown class {item!r}")
    return frozenset(ids)


def detections_reply(
    frame_id: int | None,
    timestamp: float | None,
    result: Result,
    hazards: list[dict[str, Any]],
    detections: Sequence[Detection] | None = None,
) -> dict[str, Any]:
    """The `detections` reply (also the /v1/detect body and the SSE event data); `detections` as shown."""
    shown = result.detections if detections is None else detections
    return {
        "type": "detections",
        "frame_id": frame_id,
        "timestamp": timestamp,
        "image_size": list(result.image_size),
        "detections": [d.to_json() for d in shown],
        "hazards": hazards,
        "timing_ms": result.timings.to_json(),
    }


def error_reply(frame_id: int | None, exc: EdgeAgentError) -> dict[str, Any]:
    """The `error` reply for one frame or message."""
    return {"type": "error", "frame_id": frame_id, "code": exc.code, "message": str(exc)}


def dropped_reply(frame_id: int | None, reason: str) -> dict[str, Any]:
    """The `dropped` reply."""
    return {"type": "dropped", "frame_id": frame_id, "reason": reason}


def model_json(engine: Engine) -> dict[str, Any]:
    """Model description for the session message and /v1/info."""
    m = engine.model
    return {
        "name": m.name,
        "input_size": list(m.input_size),
        "labels": list(m.labels),
        "family": m.family,
        "precision": m.precision,
    }


def device_json(engine: Engine) -> dict[str, Any]:
    """Device fields of the session message and /v1/info."""
    d = engine.device
    if d is None:
        return {"device": None, "executing": []}
    return {"device": d.selected, "executing": list(d.executing)}
