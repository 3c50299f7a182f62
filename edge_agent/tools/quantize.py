"""`edge-agent model quantize`: NNCF post-training INT8 quantization, then the accuracy gate (gate.py).

Calibration images go through the engine's own JPEG decode and letterbox (FrameBuffers), then the
conversion the compiled graph's PrePostProcessor does (drop X, layout, scale), so NNCF sees exactly the
tensors the engine will feed. NNCF is an optional extra (`pip install 'edge-agent[quantize]'`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from ..config import Config
from ..errors import EdgeAgentError, ModelError
from ..inference.contract import Detection
from ..inference.frames import FrameBuffers, check_jpeg
from ..inference.models.families import rt_text
from ..inference.models.loader import GATE_RT_PATH, LoadedModel, int8_path, load_model
from .gate import MIN_GATE_PHOTOS, GateReport, compare, detections_of

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg")
MAX_IMAGE_BYTES = 64 << 20
MIN_FRAMES = 20  # kept frames needed for --from-frames (three quarters calibrate, a quarter joins the gate)


def default_gate_images() -> Path:
    """The held-out photos setup (or the package) installs: <prefix>/share/edge-agent/photos/gate.

    The prefix is this venv's, or that of the venv edge_agent is installed in (a quantizer venv that borrows
    the package's libraries through a .pth file).
    """
    up = Path(__file__).resolve().parents  # <prefix>/lib/pythonX.Y/site-packages/edge_agent/tools/quantize.py
    prefixes = [Path(sys.prefix), *([up[5]] if len(up) > 5 else [])]
    folders = [p / "share" / "edge-agent" / "photos" / "gate" for p in prefixes]
    return next((f for f in folders if f.is_dir()), folders[0])


class GateFailed(EdgeAgentError):
    """The quantized model lost too much accuracy; it was not written."""

    code = "gate_failed"


@dataclass
class QuantizeResult:
    """What `model quantize` made: the written model (None when the gate failed) and the gate's figures."""

    output: Path | None
    report: GateReport


def jpeg_files(folder: Path) -> list[Path]:
    """The JPEG files of a folder, sorted; a missing or empty folder is an error naming it."""
    if not folder.is_dir():
        raise ModelError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ModelError(f"no JPEG images (*.jpg, *.jpeg) in {folder}")
    return files


def read_jpegs(files: list[Path]) -> list[bytes]:
    """File contents, each checked to be a readable JPEG (the error names the file)."""
    out = []
    for f in files:
        data = f.read_bytes()
        try:
            check_jpeg(data, MAX_IMAGE_BYTES, 1 << 28)
        except EdgeAgentError as exc:
            raise ModelError(f"{f}: {exc}") from None
        out.append(data)
    return out


def model_inputs(loaded: LoadedModel, jpegs: list[bytes], augment: bool) -> Iterator[np.ndarray]:
    """Each image as the model's own input tensor, letterboxed as the engine does; `augment` adds mirrors."""
    w, h = loaded.info.input_size
    buffers = FrameBuffers(w * h)
    target = np.empty((1, h, w, 4), np.uint8)
    for data in jpegs:
        width, height = check_jpeg(data, MAX_IMAGE_BYTES, 1 << 28)
        image = buffers.decode_into(data, width, height, w, h)
        views = [image, image[:, ::-1]] if augment else [image]
        for view in views:
            pixels = buffers.load_pixels(np.ascontiguousarray(view)) if view is not image else image
            buffers.letterbox_into(pixels, target)
            yield _as_model_input(loaded, target)


def _as_model_input(loaded: LoadedModel, target: np.ndarray) -> np.ndarray:
    rgb = target[..., :3]
    if loaded.input_layout == "NCHW":
        rgb = rgb.transpose(0, 3, 1, 2)
    if loaded.scale == 1.0:
        return np.ascontiguousarray(rgb)
    return np.ascontiguousarray(rgb, dtype=np.float32) / np.float32(loaded.scale)


def head_scope(model: ov.Model) -> list[str]:
    """Names of the nodes from each output back to (and including) its last convolution: kept in float."""
    names: list[str] = []
    stack = [o.get_node() for o in model.outputs]
    seen: set[str] = set()
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen or node.get_type_name() in ("Parameter", "Constant"):
            continue
        seen.add(name)
        names.append(name)
        if node.get_type_name() in ("Convolution", "MatMul"):
            continue
        stack.extend(i.get_source_output().get_node() for i in node.inputs())
    return names


@dataclass(frozen=True, slots=True)
class Recipe:
    """One way to quantize: an NNCF preset, and whether the detection heads stay in float."""

    preset: str  # nncf.QuantizationPreset member
    keep_heads: bool


# Fastest first; `model quantize` writes the first that passes the gate. Measured on the default model
# (benchmark_app INT8 / FP32 throughput): PERFORMANCE (symmetric activations) needs no zero-point
# compensation, 1.28x on AMX where MIXED is 1.03x, and 1.69x vs 1.63x with the CPU capped to AVX2;
# MIXED with the heads in float is the most accurate (tolerant F1 0.989 vs 0.967).
RECIPES = {
    "performance": Recipe("PERFORMANCE", keep_heads=False),
    "accurate": Recipe("MIXED", keep_heads=True),
}


def quantize_model(loaded: LoadedModel, calibration: list[np.ndarray], recipe: Recipe) -> ov.Model:
    """NNCF PTQ (OpenVINO backend) with fast bias correction, as the recipe says."""
    try:
        import nncf
    except ImportError:
        raise ModelError(
            "quantizing needs NNCF, an optional extra: pip install 'edge-agent[quantize]'"
        ) from None
    nncf.set_log_level(logging.WARNING)
    scope = nncf.IgnoredScope(names=head_scope(loaded.model), validate=False) if recipe.keep_heads else None
    return nncf.quantize(
        loaded.model,
        nncf.Dataset(calibration),
        preset=nncf.QuantizationPreset[recipe.preset],
        subset_size=len(calibration),
        fast_bias_correction=True,
        ignored_scope=scope,
    )


def from_frames(folder: Path, shipped_gate: Path) -> tuple[list[Path], list[Path]]:
    """(calibration, gate) files from the kept on-site frames: every 4th (in content-hash order) is held out
    for the gate, together with the shipped held-out photos."""
    frames = sorted(folder.glob("frame-*.jpg")) if folder.is_dir() else []
    if len(frames) < MIN_FRAMES:
        raise ModelError(
            f"only {len(frames)} kept frames in {folder} (at least {MIN_FRAMES}): "
            "raise calibration.keep_frames or let the agent run longer"
        )
    ordered = sorted(frames, key=lambda p: hashlib.sha256(p.read_bytes()).digest())
    held = set(ordered[::4])
    return [p for p in ordered if p not in held], sorted(held) + jpeg_files(shipped_gate)


def quantize(
    config: Config,
    model: str,
    calib_files: list[Path],
    gate_files: list[Path],
    output: Path | None = None,
    recipe: str = "auto",
) -> QuantizeResult:
    """Quantize `model` on the calibration files, gate it on the gate files; written only when it passes.

    recipe 'auto' tries RECIPES fastest first and keeps the first that passes.
    """
    loaded = load_model(
        ov.Core(), model, config.model.family, config.model.labels, config.model.name, config.model.input_size
    )
    fp32_path = Path(loaded.info.path)
    target = output or int8_path(fp32_path)
    if target.suffix != ".xml":
        raise ModelError(f"output must be an .xml path, got {target}")
    overlap = {f.read_bytes() for f in calib_files} & {f.read_bytes() for f in gate_files}
    if overlap:
        raise ModelError(f"{len(overlap)} gate photos are also calibration images: the gate must be held out")
    calibration = list(model_inputs(loaded, read_jpegs(calib_files), augment=True))
    log.info("calibrating on %d images (%d samples)", len(calib_files), len(calibration))
    photos = read_jpegs(gate_files)
    reference = detections_of(config, fp32_path, photos)  # the same for every recipe
    for name in RECIPES if recipe == "auto" else [recipe]:
        quantized = quantize_model(loaded, calibration, RECIPES[name])
        quantized.set_rt_info(json.dumps(_source_meta(loaded)), ["edge_agent", "meta"])
        report = gate(config, reference, quantized, target, photos, loaded.info.labels, name)
        if report.passed or report.photos < MIN_GATE_PHOTOS:  # too few photos fail every recipe
            break
        log.info("recipe %s: %s", name, report.summary())
    return QuantizeResult(target if report.passed else None, report)


def _source_meta(loaded: LoadedModel) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(rt_text(loaded.model, "edge_agent", "meta") or "{}")
    meta.setdefault("labels", list(loaded.info.labels))
    meta.setdefault("family", loaded.info.family)
    meta.setdefault("source", loaded.info.name)
    return meta


def gate(
    config: Config,
    reference: list[list[Detection]],
    quantized: ov.Model,
    target: Path,
    photos: list[bytes],
    labels: tuple[str, ...],
    recipe: str = "",
) -> GateReport:
    """Save the candidate beside the target, run it on the photos against the FP32 model's detections
    (`reference`, from detections_of), keep it only if it passes."""
    tmp = target.with_name(f".{target.stem}.candidate.xml")
    ov.save_model(quantized, tmp)
    try:
        report = compare(
            reference,
            detections_of(config, tmp, photos),
            config.detection.confidence,
            labels,
        )
        report.recipe = recipe
        if report.passed:
            quantized.set_rt_info(json.dumps(report.to_json()), list(GATE_RT_PATH))
            ov.save_model(quantized, target)
    finally:
        for part in (tmp, tmp.with_suffix(".bin")):
            if part.exists():
                os.unlink(part)
    return report
