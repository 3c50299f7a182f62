"""Read a model, validate its inputs/outputs, find its family and labels, and pick its decoder."""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openvino as ov

from ...errors import ModelError
from ..contract import ModelInfo
from .decoders import Decoder
from .families import family_for, rt_text

DEFAULT_MODEL_NAME = "yolov3-tiny-coco"
SSD_TF_INPUT = (300, 300)  # TF object-detection graphs take any size; SSDLite was trained at 300x300


def default_model_path() -> Path:
    """Where `edge-agent model build-default` puts the built-in IR: <prefix>/share/edge-agent/models/."""
    return Path(sys.prefix) / "share" / "edge-agent" / "models" / f"{DEFAULT_MODEL_NAME}.xml"


def resolve_model_path(path: str) -> Path:
    """'default' → the built-in IR; anything else is a file path."""
    resolved = default_model_path() if path == "default" else Path(path).expanduser()
    if not resolved.is_file():
        hint = " (run `edge-agent model build-default` once)" if path == "default" else ""
        raise ModelError(f"model file not found: {resolved}{hint}")
    return resolved


@dataclass
class LoadedModel:
    """A read (not yet compiled) model plus everything needed to serve it."""

    model: ov.Model
    info: ModelInfo
    decoder: Decoder
    input_layout: str  # "NCHW" or "NHWC" of the model's own input
    scale: float  # divide u8 pixels by this (1.0 when the graph takes raw u8)


def _input_layout(model: ov.Model) -> tuple[str, tuple[int, int]]:
    if len(model.inputs) != 1:
        raise ModelError(f"detector must have exactly one image input, found {len(model.inputs)}")
    shape = model.input(0).get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4:
        raise ModelError(f"image input must be 4-D, got {shape}")
    if shape[3].is_static and shape[3].get_length() == 3:
        layout, h, w = "NHWC", shape[1], shape[2]
    elif shape[1].is_static and shape[1].get_length() == 3:
        layout, h, w = "NCHW", shape[2], shape[3]
    else:
        raise ModelError(f"image input must have 3 channels (NCHW or NHWC), got {shape}")
    if h.is_dynamic or w.is_dynamic:
        model.reshape(
            {
                model.input(0).get_any_name(): [1, *SSD_TF_INPUT, 3]
                if layout == "NHWC"
                else [1, 3, *SSD_TF_INPUT]
            }
        )
        return layout, SSD_TF_INPUT
    return layout, (w.get_length(), h.get_length())


def load_model(
    core: ov.Core,
    path_setting: str,
    family_setting: str = "auto",
    labels_override: list[str] | None = None,
    name: str | None = None,
) -> LoadedModel:
    """Read and validate a detector; raises ModelError with the reason when it cannot be served."""
    path = resolve_model_path(path_setting)
    try:
        model = core.read_model(path)
    except RuntimeError as exc:
        raise ModelError(f"OpenVINO cannot read {path}: {str(exc).splitlines()[0]}") from None
    meta_text = rt_text(model, "edge_agent", "meta")
    meta: dict[str, Any] = json.loads(meta_text) if meta_text else {}
    family = family_for(model, meta, family_setting)
    layout, input_size = _input_layout(model)
    labels = labels_override or meta.get("labels") or family.default_labels(model, path)
    if not labels:
        raise ModelError(f"no labels found for {path}; set model.labels in the config")
    family.check([tuple(o.get_partial_shape().get_min_shape()) for o in model.outputs], len(labels))
    decoder = family.decoder(model, meta, input_size)
    u8_graph = model.input(0).get_element_type() == ov.Type.u8
    info = ModelInfo(
        name=name or meta.get("source") or path.stem,
        path=str(path),
        family=family.type_key,
        input_size=input_size,
        labels=tuple(labels),
        sha256=file_sha256(path),
    )
    return LoadedModel(
        model=model, info=info, decoder=decoder, input_layout=layout, scale=1.0 if u8_graph else 255.0
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
