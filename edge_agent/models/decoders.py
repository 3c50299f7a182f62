"""Output decoders for the three supported families, and vectorised class-aware NMS.

Every decoder turns raw output arrays into (boxes[N,4] x1y1x2y2 in model-input pixels, scores[N], class_ids[N]).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import ModelError

Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]


class Decoder(Protocol):
    """Turns one inference's output arrays into candidate boxes above a confidence threshold."""

    def __call__(self, outputs: Sequence[np.ndarray], conf: float) -> Candidates: ...


def _empty() -> Candidates:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


@dataclass(frozen=True)
class DarknetYoloDecoder:
    """Darknet [yolo] grids: per head [1, A*(5+C), H, W] raw logits, anchors in input pixels."""

    anchors: tuple[tuple[tuple[float, float], ...], ...]  # per output, in output order
    input_size: tuple[int, int]  # (w, h)

    def __call__(self, outputs: Sequence[np.ndarray], conf: float) -> Candidates:
        parts = [self._head(out, np.asarray(anc, np.float32), conf) for out, anc in zip(outputs, self.anchors)]
        boxes, scores, classes = zip(*parts)
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)

    def _head(self, out: np.ndarray, anchors: np.ndarray, conf: float) -> Candidates:
        na = anchors.shape[0]
        _, ch, gh, gw = out.shape
        grid = out.reshape(na, ch // na, gh, gw)
        obj = _sigmoid(grid[:, 4])
        a_idx, gy, gx = np.nonzero(obj > conf)  # objectness bounds the score: cheap pre-filter
        if a_idx.size == 0:
            return _empty()
        cell = grid[a_idx, :, gy, gx]  # [K, 5+C]
        cls_prob = _sigmoid(cell[:, 5:]) * obj[a_idx, gy, gx][:, None]
        class_ids = cls_prob.argmax(1)
        scores = cls_prob[np.arange(class_ids.size), class_ids]
        keep = scores > conf
        in_w, in_h = self.input_size
        cx = (_sigmoid(cell[keep, 0]) + gx[keep]) * (in_w / gw)
        cy = (_sigmoid(cell[keep, 1]) + gy[keep]) * (in_h / gh)
        bw = np.exp(np.minimum(cell[keep, 2], 10.0)) * anchors[a_idx[keep], 0]
        bh = np.exp(np.minimum(cell[keep, 3], 10.0)) * anchors[a_idx[keep], 1]
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        return boxes.astype(np.float32), scores[keep].astype(np.float32), class_ids[keep]


@dataclass(frozen=True)
class UltralyticsDecoder:
    """YOLOv5u/v8/v11 heads: [1, 4+nc, N] with cx, cy, w, h in input pixels and per-class scores."""

    def __call__(self, outputs: Sequence[np.ndarray], conf: float) -> Candidates:
        pred = outputs[0][0]  # [4+nc, N]
        scores_all = pred[4:]
        class_ids = scores_all.argmax(0)
        scores = scores_all[class_ids, np.arange(class_ids.size)]
        keep = scores > conf
        cx, cy, w, h = (pred[i, keep] for i in range(4))
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        return boxes.astype(np.float32), scores[keep].astype(np.float32), class_ids[keep]


@dataclass(frozen=True)
class SsdDecoder:
    """SSD: DetectionOutput [1,1,N,7] or TF object detection (boxes, scores, classes, num); normalised boxes."""

    input_size: tuple[int, int]
    layout: str  # "detection_output" or "tf"
    label_offset: int  # subtract from the model's class ids to index our labels (TF models count from 1)
    output_order: tuple[int, ...] = (0, 1, 2, 3)  # tf: indices of boxes, scores, classes, num in outputs

    def __call__(self, outputs: Sequence[np.ndarray], conf: float) -> Candidates:
        in_w, in_h = self.input_size
        if self.layout == "detection_output":
            det = outputs[0].reshape(-1, 7)
            det = det[(det[:, 0] >= 0) & (det[:, 2] > conf)]
            boxes = det[:, 3:7] * np.array([in_w, in_h, in_w, in_h], np.float32)
            return boxes.astype(np.float32), det[:, 2].astype(np.float32), det[:, 1].astype(np.int64) - self.label_offset
        b_i, s_i, c_i, n_i = self.output_order
        n = int(outputs[n_i].reshape(-1)[0])
        scores = outputs[s_i].reshape(-1)[:n]
        keep = scores > conf
        ymin, xmin, ymax, xmax = outputs[b_i].reshape(-1, 4)[:n][keep].T
        boxes = np.stack([xmin * in_w, ymin * in_h, xmax * in_w, ymax * in_h], axis=1)
        classes = outputs[c_i].reshape(-1)[:n][keep].astype(np.int64) - self.label_offset
        return boxes.astype(np.float32), scores[keep].astype(np.float32), classes


def nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou: float, limit: int) -> np.ndarray:
    """Class-aware greedy NMS, vectorised over one IoU matrix; returns kept indices, best first."""
    if scores.size == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")[: max(limit * 8, 256)]
    # Shifting each class into its own coordinate region makes one pass class-aware.
    shift = (class_ids[order].astype(np.float32) * (float(np.abs(boxes).max()) + 1.0))[:, None]
    b = boxes[order] + shift
    area = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    x1 = np.maximum(b[:, None, 0], b[None, :, 0])
    y1 = np.maximum(b[:, None, 1], b[None, :, 1])
    x2 = np.minimum(b[:, None, 2], b[None, :, 2])
    y2 = np.minimum(b[:, None, 3], b[None, :, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    overlap = inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-9)
    suppressed = np.zeros(order.size, bool)
    keep: list[int] = []
    for i in range(order.size):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= limit:
            break
        suppressed |= overlap[i] > iou
    return order[np.asarray(keep, np.int64)]


def check_outputs(family: str, shapes: Sequence[tuple[int, ...]], num_labels: int) -> None:
    """Raise ModelError when output shapes do not fit the family (validated at load, not per frame)."""
    if family == "ultralytics":
        if len(shapes) < 1 or len(shapes[0]) != 3 or shapes[0][1] != 4 + num_labels:
            raise ModelError(f"ultralytics head must be [1, 4+{num_labels}, N], got {shapes}")
    elif family == "darknet":
        for s in shapes:
            if len(s) != 4 or s[1] % (5 + num_labels):
                raise ModelError(f"darknet yolo output must be [1, A*(5+{num_labels}), H, W], got {s}")
    elif family == "ssd":
        if not (len(shapes) == 1 and shapes[0][-1] == 7) and len(shapes) < 4:
            raise ModelError(f"ssd outputs must be [1,1,N,7] or boxes/scores/classes/num, got {shapes}")
    else:
        raise ModelError(f"unknown model family '{family}'")
