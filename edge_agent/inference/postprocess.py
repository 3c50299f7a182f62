"""From decoder candidates to Detection objects in the original frame's pixel coordinates."""

from __future__ import annotations

import numpy as np

from .contract import Detection
from .models.decoders import Candidates, nms


def to_detections(
    candidates: Candidates,
    labels: tuple[str, ...],
    scale: float,
    dx: int,
    dy: int,
    size: tuple[int, int],
    iou: float | None,
    limit: int,
    classes: frozenset[int] | None,
) -> list[Detection]:
    """Filter by class, run class-aware NMS (iou None: the model did it), undo the letterbox, clip to the frame."""
    boxes, scores, class_ids = candidates
    if not scores.size:
        return []
    if classes is not None or class_ids.min() < 0 or class_ids.max() >= len(labels):
        valid = (class_ids >= 0) & (class_ids < len(labels))
        if classes is not None:
            valid &= np.isin(class_ids, np.fromiter(classes, np.int64, len(classes)))
        boxes, scores, class_ids = boxes[valid], scores[valid], class_ids[valid]
    if iou is None:
        keep = np.argsort(-scores, kind="stable")[:limit]
    else:
        keep = nms(boxes, scores, class_ids, iou, limit)
    width, height = size
    out = (boxes[keep] - np.array([dx, dy, dx, dy], np.float32)) / scale
    np.minimum(np.maximum(out, 0.0, out=out), np.array([width, height, width, height], np.float32), out=out)
    return [
        Detection(labels[c], c, s, (b[0], b[1], b[2], b[3]))
        for b, s, c in zip(out.tolist(), scores[keep].tolist(), class_ids[keep].tolist(), strict=False)
    ]
