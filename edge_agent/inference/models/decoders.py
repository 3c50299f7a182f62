"""Output decoders of the supported families (see families.py), and vectorised class-aware NMS.

Every decoder turns raw output arrays into (boxes[N,4] x1y1x2y2 in model-input pixels, scores[N], class_ids[N]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

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
    """Darknet [yolo] grids: per head [1, A*(5+C), H, W] raw logits, anchors in input pixels.

    It runs once per frame right after inference has flushed the CPU caches, where every numpy call costs
    ~10 us; so heads are only thresholded separately and the box arithmetic runs once over all candidates.
    """

    anchors: tuple[tuple[tuple[float, float], ...], ...]  # per output, in output order
    input_size: tuple[int, int]  # (w, h)
    _cells: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, outputs: Sequence[np.ndarray], conf: float) -> Candidates:
        threshold = _logit(conf)  # objectness bounds the score; comparing logits skips a sigmoid
        logits, cells = [], []
        for head, (out, anchors) in enumerate(zip(outputs, self.anchors, strict=False)):
            _, ch, gh, gw = out.shape
            grid = out.reshape(len(anchors), ch // len(anchors), gh * gw)
            a_idx, g_idx = np.nonzero(grid[:, 4] > threshold)
            if a_idx.size:
                logits.append(grid[a_idx, :, g_idx])  # [K, 5+C]
                cells.append(self._cell_table(head, out.shape)[a_idx * gh * gw + g_idx])
        if not logits:
            return _empty()
        logit, cell = (
            (logits[0], cells[0]) if len(logits) == 1 else (np.concatenate(logits), np.concatenate(cells))
        )
        # sigmoid is monotonic: the best class of the logits is the best class of the probabilities.
        scores = _sigmoid(logit[:, 5:].max(1)) * _sigmoid(logit[:, 4])
        keep = np.flatnonzero(scores > conf)
        logit, cell = logit[keep], cell[keep]
        centre = (_sigmoid(logit[:, 0:2]) + cell[:, 0:2]) * cell[:, 2:4]
        half = np.exp(np.minimum(logit[:, 2:4], 10.0)) * cell[:, 4:6]
        boxes = np.concatenate([centre - half, centre + half], axis=1).astype(np.float32, copy=False)
        return boxes, scores[keep].astype(np.float32, copy=False), logit[:, 5:].argmax(1)

    def _cell_table(self, head: int, shape: tuple[int, ...]) -> np.ndarray:
        """Per anchor and grid cell: column, row, cell width and height in pixels, half the anchor's w and h."""
        key = (head, *shape[1:])
        table = self._cells.get(key)
        if table is None:
            anchors = np.asarray(self.anchors[head], np.float32)
            _, _, gh, gw = shape
            rows, cols = np.divmod(np.arange(gh * gw, dtype=np.float32), gw)
            in_w, in_h = self.input_size
            table = np.empty((len(anchors), gh * gw, 6), np.float32)
            table[..., 0], table[..., 1] = cols, rows
            table[..., 2], table[..., 3] = in_w / gw, in_h / gh
            table[..., 4:6] = anchors[:, None, :] / 2
            table = self._cells[key] = table.reshape(-1, 6)
        return table


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def _corners(cxcywh: np.ndarray) -> np.ndarray:
    """[K, 4] centre, size boxes to x1y1x2y2 float32."""
    half = cxcywh[:, 2:4] / 2
    return np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1).astype(np.float32, copy=False)


@dataclass(frozen=True)
class UltralyticsDecoder:
    """YOLOv5u/v8/v11 heads: [1, 4+nc, N] with cx, cy, w, h in input pixels and per-class scores."""

    def __call__(self, outputs: Sequence[np.ndarray], conf: float) -> Candidates:
        pred = outputs[0][0]  # [4+nc, N]
        scores_all = pred[4:]
        class_ids = scores_all.argmax(0)
        scores = scores_all[class_ids, np.arange(class_ids.size)]
        keep = scores > conf
        return _corners(pred[:4, keep].T), scores[keep].astype(np.float32), class_ids[keep]


@dataclass(frozen=True)
class Yolov5Decoder:
    """Classic YOLOv5 heads: [1, N, 5+nc] with cx, cy, w, h in input pixels, objectness and class scores."""

    def __call__(self, outputs: Sequence[np.ndarray], conf: float) -> Candidates:
        pred = outputs[0][0]  # [N, 5+nc]
        pred = pred[pred[:, 4] > conf]  # objectness bounds the score
        if not pred.shape[0]:
            return _empty()
        class_ids = pred[:, 5:].argmax(1)
        scores = pred[:, 4] * pred[np.arange(class_ids.size), 5 + class_ids]
        keep = scores > conf
        return _corners(pred[keep, :4]), scores[keep].astype(np.float32), class_ids[keep]


@dataclass(frozen=True)
class EndToEndDecoder:
    """End-to-end heads: [1, N, 6] rows of x1, y1, x2, y2 (input pixels), score, class id; already suppressed."""

    suppressed = True  # the model ran its own NMS (or needs none): the engine skips ours

    def __call__(self, outputs: Sequence[np.ndarray], conf: float) -> Candidates:
        rows = outputs[0][0]
        rows = rows[rows[:, 4] > conf]
        return (
            rows[:, :4].astype(np.float32),
            rows[:, 4].astype(np.float32),
            np.rint(rows[:, 5]).astype(np.int64),
        )


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
            return (
                boxes.astype(np.float32),
                det[:, 2].astype(np.float32),
                det[:, 1].astype(np.int64) - self.label_offset,
            )
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
    if scores.size <= 1:
        return np.arange(scores.size, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")[: max(limit * 8, 256)]
    # Shifting each class into its own coordinate region makes one pass class-aware.
    b = boxes[order] + (class_ids[order] * (float(np.abs(boxes).max()) + 1.0))[:, None]
    size = (b[:, 2:] - b[:, :2]).clip(0)
    inter = (
        (np.minimum(b[:, None, 2:], b[None, :, 2:]) - np.maximum(b[:, None, :2], b[None, :, :2]))
        .clip(0)
        .prod(2)
    )
    area = size.prod(1)
    overlaps = inter > iou * np.maximum(area[:, None] + area[None, :] - inter, 1e-9)
    suppressed = np.zeros(order.size, bool)
    keep: list[int] = []
    for i in range(order.size):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= limit:
            break
        suppressed |= overlaps[i]
    return order[keep]
