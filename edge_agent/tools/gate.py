"""The INT8 accuracy gate: a quantized model's detections against its FP32 model's on held-out real photos.

Detections are matched per class at IoU >= 0.5, one to one, best score first. A detection at or above the
threshold counts as kept when the other model finds the same class there at threshold - tolerance or more,
so a score that merely crosses the threshold is not a disagreement (tolerant F1); the strict F1 uses the
same threshold on both sides; mAP@0.5 ranks INT8's detections against FP32's as ground truth.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..inference.contract import Detection, DetectParams
from ..inference.engine import Engine

MATCH_IOU = 0.5
TOLERANCE = 0.15
MIN_F1 = 0.95
MAX_CLASS_LOSS = 1
FLOOR = 0.05  # lowest confidence read for mAP's ranking
MIN_GATE_PHOTOS = 40


@dataclass
class GateReport:
    """The gate's figures; `passed` when tolerant F1 >= 0.95 and no class loses more than one detection."""

    photos: int
    threshold: float
    fp32_detections: int
    int8_detections: int
    tolerant_f1: float
    fp32_kept: float  # share of FP32's detections that INT8 keeps (tolerant)
    int8_kept: float  # share of INT8's detections that FP32 backs (tolerant)
    strict_f1: float
    map50: float
    class_losses: dict[str, int] = field(default_factory=dict)  # FP32 detections INT8 lost, per class
    passed: bool = False
    reasons: list[str] = field(default_factory=list)
    recipe: str = ""  # how the candidate was quantized (quantize.RECIPES)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for rt_info and `model inspect`."""
        return asdict(self)

    def summary(self) -> str:
        """One line of the figures."""
        return (
            f"gate {'passed' if self.passed else 'FAILED'} on {self.photos} photos: tolerant F1 "
            f"{self.tolerant_f1:.3f} (FP32 kept {self.fp32_kept:.3f}, INT8 backed {self.int8_kept:.3f}), "
            f"strict F1 {self.strict_f1:.3f}, mAP@0.5 {self.map50:.3f}, detections FP32 "
            f"{self.fp32_detections} / INT8 {self.int8_detections}, class losses {self.class_losses or 'none'}"
            + (f", recipe {self.recipe}" if self.recipe else "")
            + (f"; {'; '.join(self.reasons)}" if self.reasons else "")
        )


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two x1y1x2y2 boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _matched(ours: list[Detection], theirs: list[Detection]) -> list[bool]:
    """For each of ours (best first), whether an unused detection of theirs of its class overlaps it."""
    used = [False] * len(theirs)
    out = []
    for d in sorted(ours, key=lambda d: -d.confidence):
        best, best_iou = -1, MATCH_IOU
        for j, t in enumerate(theirs):
            if not used[j] and t.class_id == d.class_id and (v := iou(d.box, t.box)) >= best_iou:
                best, best_iou = j, v
        if best >= 0:
            used[best] = True
        out.append(best >= 0)
    return out


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 1.0


def _average_precision(ranked: list[tuple[float, bool]], positives: int) -> float:
    """All-point interpolated AP of (score, true positive) pairs."""
    if not positives:
        return 1.0 if not ranked else 0.0
    ranked.sort(key=lambda x: -x[0])
    tp = np.cumsum([t for _, t in ranked], dtype=np.float64)
    precision = tp / np.arange(1, len(ranked) + 1)
    recall = tp / positives
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    recall = np.concatenate([[0.0], recall])
    return float(np.sum((recall[1:] - recall[:-1]) * precision))


def compare(
    fp32: list[list[Detection]], int8: list[list[Detection]], threshold: float, labels: Sequence[str]
) -> GateReport:
    """The gate's figures for per-photo detections of both models, read down to FLOOR."""
    low = threshold - TOLERANCE
    kept_a = kept_b = strict = n_a = n_b = 0
    losses: Counter[str] = Counter()
    ranked: dict[int, list[tuple[float, bool]]] = {}
    positives: Counter[int] = Counter()
    for a_all, b_all in zip(fp32, int8, strict=True):
        a = [d for d in a_all if d.confidence >= threshold]
        b = [d for d in b_all if d.confidence >= threshold]
        n_a, n_b = n_a + len(a), n_b + len(b)
        a_kept = _matched(a, [d for d in b_all if d.confidence >= low])
        kept_a += sum(a_kept)
        kept_b += sum(_matched(b, [d for d in a_all if d.confidence >= low]))
        strict += sum(_matched(a, b))
        for d, ok in zip(sorted(a, key=lambda d: -d.confidence), a_kept, strict=True):
            if not ok:
                losses[labels[d.class_id]] += 1
        positives.update(d.class_id for d in a)
        ranked_b = sorted(b_all, key=lambda d: -d.confidence)
        for d, tp in zip(ranked_b, _matched(ranked_b, a), strict=True):
            ranked.setdefault(d.class_id, []).append((d.confidence, tp))
    fp32_kept = kept_a / n_a if n_a else 1.0
    int8_kept = kept_b / n_b if n_b else 1.0
    classes = sorted(positives)
    report = GateReport(
        photos=len(fp32),
        threshold=threshold,
        fp32_detections=n_a,
        int8_detections=n_b,
        tolerant_f1=round(_f1(int8_kept, fp32_kept), 4),
        fp32_kept=round(fp32_kept, 4),
        int8_kept=round(int8_kept, 4),
        strict_f1=round(2 * strict / (n_a + n_b) if n_a + n_b else 1.0, 4),
        map50=round(
            float(np.mean([_average_precision(ranked.get(c, []), positives[c]) for c in classes]))
            if classes
            else 1.0,
            4,
        ),
        class_losses=dict(sorted(losses.items())),
    )
    _judge(report)
    return report


def _judge(report: GateReport) -> None:
    if report.photos < MIN_GATE_PHOTOS:
        report.reasons.append(f"only {report.photos} held-out photos (at least {MIN_GATE_PHOTOS} needed)")
    if report.tolerant_f1 < MIN_F1:
        report.reasons.append(f"tolerant F1 {report.tolerant_f1:.3f} < {MIN_F1}")
    worst = [f"{k} lost {v}" for k, v in report.class_losses.items() if v > MAX_CLASS_LOSS]
    if worst:
        report.reasons.append(f"classes losing more than {MAX_CLASS_LOSS}: {', '.join(worst)}")
    report.passed = not report.reasons


def detections_of(config: Config, model_path: Path, photos: list[bytes]) -> list[list[Detection]]:
    """Each photo's detections down to FLOOR, by the real engine on CPU serving `model_path` as it is.

    In f32 on both sides: the gate judges the quantization, not the build box (an AMX CPU would run the
    FP32 reference in bf16 and the INT8 model's float layers too).
    """
    m = config.model.model_copy(update={"path": str(model_path), "precision": "fp32"})
    eng = config.engine.model_copy(
        update={
            "device": "CPU",
            "inference_precision": "f32",
            "cache_enabled": False,
            "max_frame_bytes": 64 << 20,
            "max_frame_pixels": 1 << 28,
        }
    )
    cfg = config.model_copy(update={"model": m, "engine": eng})

    async def run() -> list[list[Detection]]:
        engine = Engine(cfg)
        await engine.async_start()
        try:
            return [(await engine.detect(p, DetectParams(confidence=FLOOR))).detections for p in photos]
        finally:
            await engine.async_stop()

    return asyncio.run(run())
