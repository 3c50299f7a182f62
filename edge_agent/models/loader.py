"""Read a model, validate its inputs/outputs, find its family and labels, and pick its decoder."""

from __future__ import annotations

import ast
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openvino as ov
import yaml

from ..errors import ModelError
from ..types import ModelInfo
from .decoders import DarknetYoloDecoder, Decoder, SsdDecoder, UltralyticsDecoder, check_outputs

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


def _rt(model: ov.Model, *path: str) -> str | None:
    if not model.has_rt_info(list(path)):
        return None
    return str(model.get_rt_info(list(path)).astype(str))


def _labels_from_names(text: str) -> list[str]:
    names = ast.literal_eval(text)
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    return [str(n) for n in names]


def _ultralytics_labels(model: ov.Model, path: Path) -> list[str] | None:
    meta = path.parent / "metadata.yaml"
    if meta.is_file():
        data = yaml.safe_load(meta.read_text())
        if isinstance(data, dict) and "names" in data:
            names = data["names"]
            return [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    for rt_path in (("framework", "names"), ("model_info", "names")):
        text = _rt(model, *rt_path)
        if text:
            return _labels_from_names(text)
    text = _rt(model, "model_info", "labels")
    return text.split() if text else None


def _guess_family(model: ov.Model, meta: dict[str, Any]) -> str:
    if "family" in meta:
        return str(meta["family"])
    shapes = [o.get_partial_shape() for o in model.outputs]
    if len(shapes) == 1 and shapes[0].rank.get_length() == 3:
        return "ultralytics"
    if len(shapes) == 1 and shapes[0].rank.get_length() == 4 and shapes[0][3].get_length() == 7:
        return "ssd"
    if len(shapes) >= 4 and any("num_detections" in n for o in model.outputs for n in o.get_names()):
        return "ssd"
    raise ModelError(
        f"cannot tell the model family from outputs {[str(s) for s in shapes]}; set model.family in the config"
    )


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
        model.reshape({model.input(0).get_any_name(): [1, *SSD_TF_INPUT, 3] if layout == "NHWC" else [1, 3, *SSD_TF_INPUT]})
        return layout, SSD_TF_INPUT
    return layout, (w.get_length(), h.get_length())


def _tf_output_order(model: ov.Model) -> tuple[int, ...]:
    wanted = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
    order = []
    for name in wanted:
        idx = next((i for i, o in enumerate(model.outputs) if any(name in n for n in o.get_names())), None)
        if idx is None:
            raise ModelError(f"TF detection model lacks output '{name}'")
        order.append(idx)
    return tuple(order)


def load_model(core: ov.Core, path_setting: str, family_setting: str = "auto",
               labels_override: list[str] | None = None, name: str | None = None) -> LoadedModel:
    """Read and validate a detector; raises ModelError with the reason when it cannot be served."""
    path = resolve_model_path(path_setting)
    try:
        model = core.read_model(path)
    except RuntimeError as exc:
        raise ModelError(f"OpenVINO cannot read {path}: {str(exc).splitlines()[0]}") from None
    meta_text = _rt(model, "edge_agent", "meta")
    meta: dict[str, Any] = json.loads(meta_text) if meta_text else {}
    family = family_setting if family_setting != "auto" else _guess_family(model, meta)
    layout, input_size = _input_layout(model)
    labels = labels_override or meta.get("labels")
    if labels is None and family == "ultralytics":
        labels = _ultralytics_labels(model, path)
    if labels is None and family == "ssd":
        labels = ["person"]
    if not labels:
        raise ModelError(f"no labels found for {path}; set model.labels in the config")
    shapes = [tuple(o.get_partial_shape().get_min_shape()) for o in model.outputs]
    decoder: Decoder
    if family == "darknet":
        check_outputs(family, shapes, len(labels))
        heads = {h["name"]: tuple(tuple(a) for a in h["anchors"]) for h in meta.get("heads", [])}
        try:
            anchors = tuple(heads[next(iter(o.get_names()))] for o in model.outputs)
        except (KeyError, StopIteration):
            raise ModelError("darknet model lacks anchors in rt_info (import it with `edge-agent model import-darknet`)") from None
        decoder = DarknetYoloDecoder(anchors=anchors, input_size=input_size)
    elif family == "ultralytics":
        check_outputs(family, shapes, len(labels))
        decoder = UltralyticsDecoder()
    else:
        tf = len(model.outputs) >= 4
        decoder = SsdDecoder(input_size=input_size, layout="tf" if tf else "detection_output",
                             label_offset=1 if tf else 0, output_order=_tf_output_order(model) if tf else (0, 1, 2, 3))
    u8_graph = model.input(0).get_element_type() == ov.Type.u8
    info = ModelInfo(name=name or meta.get("source") or path.stem, path=str(path), family=family,
                     input_size=input_size, labels=tuple(labels), sha256=file_sha256(path))
    return LoadedModel(model=model, info=info, decoder=decoder, input_layout=layout, scale=1.0 if u8_graph else 255.0)


def file_sha256(path: Path) -> str:
    """sha256 of the model file (and its .bin weights for IR), for health reports."""
    digest = hashlib.sha256()
    for part in (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,):
        if part.is_file():
            with part.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()
