"""Read a model, validate its inputs/outputs, find its family and labels, and pick its decoder."""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openvino as ov

from ...errors import ModelError
from ..contract import ModelInfo
from .decoders import Decoder
from .families import family_for, rt_text
from .shapes import fix_input_size, input_layout

DEFAULT_MODEL_NAME = "yolov3-tiny-coco"
GATE_RT_PATH = ("edge_agent", "gate")  # the accuracy gate's figures, written into an INT8 model's rt_info

log = logging.getLogger(__name__)


def default_model_path() -> Path:
    """Where `edge-agent model build-default` puts the built-in IR: <prefix>/share/edge-agent/models/."""
    return Path(sys.prefix) / "share" / "edge-agent" / "models" / f"{DEFAULT_MODEL_NAME}.xml"


def int8_path(fp32: Path) -> Path:
    """Where the INT8 model quantized from an FP32 one lives: beside it, `<stem>-int8.xml`."""
    return fp32.with_name(f"{fp32.stem}-int8.xml")


def resolve_model_path(path: str, precision: str = "fp32") -> Path:
    """'default' → the built-in IR; anything else is a file path. int8/auto look for `<stem>-int8.xml` beside it."""
    resolved = default_model_path() if path == "default" else Path(path).expanduser()
    if not resolved.is_file():
        hint = " (run `edge-agent model build-default` once)" if path == "default" else ""
        raise ModelError(f"model file not found: {resolved}{hint}")
    if precision == "fp32":
        return resolved
    quantized = int8_path(resolved)
    if quantized.is_file():
        return quantized
    if precision == "int8":
        raise ModelError(
            f"model.precision is int8 but there is no INT8 model {quantized} "
            f"(make one with `edge-agent model quantize {path} --images DIR`)"
        )
    return resolved


@dataclass
class LoadedModel:
    """A read (not yet compiled) model plus everything needed to serve it."""

    model: ov.Model
    info: ModelInfo
    decoder: Decoder
    input_layout: str  # "NCHW" or "NHWC" of the model's own input
    scale: float  # divide u8 pixels by this (1.0 when the graph takes raw u8)
    suppressed: bool = False  # the model's outputs are final boxes (end-to-end heads): no NMS of ours


def gate_figures(model: ov.Model) -> dict[str, Any] | None:
    """The accuracy gate's figures an INT8 model carries, or None for a model that was not gated."""
    text = rt_text(model, *GATE_RT_PATH)
    return json.loads(text) if text else None


def load_model(
    core: ov.Core,
    path_setting: str,
    family_setting: str = "auto",
    labels_override: list[str] | None = None,
    name: str | None = None,
    input_size: tuple[int, int] | None = None,
    precision: str = "fp32",
) -> LoadedModel:
    """Read and validate a detector; raises one-line ModelError naming the file when it cannot be served."""
    path = resolve_model_path(path_setting, precision)
    try:
        loaded = _read(core, path, family_setting, labels_override, name, input_size)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None
    if precision == "auto" and loaded.info.precision != "int8" and path != resolve_model_path(path_setting):
        log.warning("%s carries no passed accuracy gate; serving the FP32 model instead", path)
        return load_model(core, path_setting, family_setting, labels_override, name, input_size, "fp32")
    return loaded


def _read(
    core: ov.Core,
    path: Path,
    family_setting: str,
    labels_override: list[str] | None,
    name: str | None,
    input_size: tuple[int, int] | None,
) -> LoadedModel:
    try:
        model = core.read_model(path)
    except RuntimeError as exc:
        raise ModelError(f"OpenVINO cannot read it: {str(exc).splitlines()[0]}") from None
    meta_text = rt_text(model, "edge_agent", "meta")
    meta: dict[str, Any] = json.loads(meta_text) if meta_text else {}
    layout = input_layout(model)
    size = fix_input_size(model, path, layout, input_size)
    family = family_for(model, meta, family_setting)
    labels = labels_override or meta.get("labels") or family.default_labels(model, path)
    if not labels:
        raise ModelError("no labels found; set model.labels in the config")
    family.check([tuple(o.get_partial_shape().get_min_shape()) for o in model.outputs], len(labels))
    decoder = family.decoder(model, meta, size)
    gate = gate_figures(model)
    info = ModelInfo(
        name=name or meta.get("source") or path.stem,
        path=str(path),
        family=family.type_key,
        input_size=size,
        labels=tuple(labels),
        sha256=file_sha256(path),
        precision="int8" if gate and gate.get("passed") else "fp32",
    )
    return LoadedModel(
        model=model,
        info=info,
        decoder=decoder,
        input_layout=layout,
        scale=1.0 if model.input(0).get_element_type() == ov.Type.u8 else 255.0,
        suppressed=bool(getattr(decoder, "suppressed", False)),
    )


def file_sha256(path: Path) -> str:
    """sha256 of the model file (and its .bin weights for IR), for health reports."""
    digest = hashlib.sha256()
    for part in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
        if part.is_file():
            with part.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()
