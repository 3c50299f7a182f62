"""Model families: the one place that maps a model's outputs to its decoder (a `type_key` registry).

Each family says whether it recognises a model's outputs, checks their shapes against the labels,
may supply default labels, and builds its decoder. A new family is one subclass here.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import openvino as ov
import yaml

from ...errors import ModelError
from .decoders import (
    DarknetYoloDecoder,
    Decoder,
    EndToEndDecoder,
    SsdDecoder,
    UltralyticsDecoder,
    Yolov5Decoder,
)

Shapes = Sequence[tuple[int, ...]]
END_TO_END_MAX = 1000  # end-to-end heads keep at most a few hundred boxes; YOLOv5 grids have thousands


def rt_text(model: ov.Model, *path: str) -> str | None:
    """A string from the model's rt_info, or None."""
    if not model.has_rt_info(list(path)):
        return None
    return str(model.get_rt_info(list(path)).astype(str))


class Family:
    """A detector output layout; subclasses register themselves under `type_key`."""

    type_key: ClassVar[str]
    registry: ClassVar[dict[str, type[Family]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Family.registry[cls.type_key] = cls

    @classmethod
    def recognizes(cls, model: ov.Model) -> bool:
        """True when the model's (reshaped, static) outputs have this family's layout."""
        return False

    @classmethod
    def default_input_size(cls, model: ov.Model) -> tuple[int, int] | None:
        """(w, h) for a model with a dynamic input that this family knows how to size, else None."""
        return None

    def default_labels(self, model: ov.Model, path: Path) -> list[str] | None:
        """Labels the model carries itself (metadata), if any."""
        return None

    def check(self, shapes: Shapes, num_labels: int) -> None:
        """Raise ModelError when the output shapes do not fit (validated at load, not per frame)."""

    def decoder(self, model: ov.Model, meta: dict[str, Any], input_size: tuple[int, int]) -> Decoder:
        """The decoder for this model."""
        raise NotImplementedError


def family_for(model: ov.Model, meta: dict[str, Any], setting: str) -> Family:
    """The family named by the config (or the model's own metadata), else the one that recognises it."""
    key = setting if setting != "auto" else meta.get("family")
    if key is None:
        key = next((k for k, cls in Family.registry.items() if cls.recognizes(model)), None)
    if key is None:
        shapes = [str(o.get_partial_shape()) for o in model.outputs]
        if all(o.get_partial_shape().rank.get_length() == 2 for o in model.outputs):
            raise ModelError(
                f"this is an image classifier (outputs {shapes}: one score per class, no boxes), "
                "not an object detector; Edge Agent serves detectors only"
            )
        raise ModelError(
            f"cannot tell the model family from outputs {shapes}; "
            f"set model.family to one of {', '.join(sorted(Family.registry))}"
        )
    cls = Family.registry.get(str(key))
    if cls is None:
        raise ModelError(f"unknown model family '{key}' (known: {', '.join(sorted(Family.registry))})")
    return cls()


def _rank3(model: ov.Model) -> tuple[int, int] | None:
    """(a, b) of a single static [1, a, b] output, else None."""
    if len(model.outputs) != 1:
        return None
    shape = model.outputs[0].get_partial_shape()
    if shape.is_dynamic or shape.rank.get_length() != 3:
        return None
    return shape[1].get_length(), shape[2].get_length()


def ultralytics_meta(model: ov.Model, path: Path | None, key: str) -> Any:
    """A key of an Ultralytics export's metadata: metadata.yaml beside the file, else its rt_info."""
    if path is not None and (path.parent / "metadata.yaml").is_file():
        data = yaml.safe_load((path.parent / "metadata.yaml").read_text())
        if isinstance(data, dict) and key in data:
            return data[key]
    for section in ("framework", "model_info"):
        text = rt_text(model, section, key)
        if text:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return text
    return None


def _names(value: Any) -> list[str]:
    return [str(value[k]) for k in sorted(value)] if isinstance(value, dict) else [str(n) for n in value]


class DarknetFamily(Family):
    """Darknet [yolo] heads imported by `edge-agent model import-darknet` (anchors in rt_info)."""

    type_key = "darknet"

    def check(self, shapes: Shapes, num_labels: int) -> None:
        """Each head is [1, A*(5+C), H, W]."""
        for s in shapes:
            if len(s) != 4 or s[1] % (5 + num_labels):
                raise ModelError(f"darknet yolo output must be [1, A*(5+{num_labels}), H, W], got {s}")

    def decoder(self, model: ov.Model, meta: dict[str, Any], input_size: tuple[int, int]) -> Decoder:
        """Anchors per head, in output order, from the importer's metadata."""
        heads = {h["name"]: tuple(tuple(a) for a in h["anchors"]) for h in meta.get("heads", [])}
        try:
            anchors = tuple(heads[next(iter(o.get_names()))] for o in model.outputs)
        except (KeyError, StopIteration):
            raise ModelError(
                "darknet model lacks anchors in rt_info (import it with `edge-agent model import-darknet`)"
            ) from None
        return DarknetYoloDecoder(anchors=anchors, input_size=input_size)


class UltralyticsFamily(Family):
    """YOLOv5u/v8/v11 exports: one [1, 4+nc, N] head; labels from metadata.yaml or rt_info."""

    type_key = "ultralytics"

    @classmethod
    def recognizes(cls, model: ov.Model) -> bool:
        """One [1, 4+nc, N] output: fewer rows than boxes."""
        dims = _rank3(model)
        return dims is not None and dims[0] < dims[1] and not ultralytics_meta(model, None, "end2end")

    def default_labels(self, model: ov.Model, path: Path) -> list[str] | None:
        """`names` of the export's metadata.yaml, else of its rt_info."""
        names = ultralytics_meta(model, path, "names")
        if isinstance(names, dict | list | tuple):
            return _names(names)
        text = rt_text(model, "model_info", "labels")
        return text.split() if text else None

    def check(self, shapes: Shapes, num_labels: int) -> None:
        """The head is [1, 4+nc, N]."""
        if len(shapes) < 1 or len(shapes[0]) != 3 or shapes[0][1] != 4 + num_labels:
            raise ModelError(f"ultralytics head must be [1, 4+{num_labels}, N], got {list(shapes)}")

    def decoder(self, model: ov.Model, meta: dict[str, Any], input_size: tuple[int, int]) -> Decoder:
        """Boxes are already in input pixels."""
        return UltralyticsDecoder()


class Yolov5Family(UltralyticsFamily):
    """Classic YOLOv5 exports: one [1, N, 5+nc] head (cx, cy, w, h, objectness, class scores), N in the thousands."""

    type_key = "yolov5"

    @classmethod
    def recognizes(cls, model: ov.Model) -> bool:
        """One [1, N, 5+nc] output with many more boxes than channels."""
        dims = _rank3(model)
        return dims is not None and dims[0] > max(END_TO_END_MAX, dims[1])

    def check(self, shapes: Shapes, num_labels: int) -> None:
        """The head is [1, N, 5+nc]."""
        if len(shapes) != 1 or len(shapes[0]) != 3 or shapes[0][2] != 5 + num_labels:
            raise ModelError(f"yolov5 head must be [1, N, 5+{num_labels}], got {list(shapes)}")

    def decoder(self, model: ov.Model, meta: dict[str, Any], input_size: tuple[int, int]) -> Decoder:
        """Boxes in input pixels; score = objectness x class score."""
        return Yolov5Decoder()


class EndToEndFamily(UltralyticsFamily):
    """End-to-end heads [1, N, 6] (YOLOv10, YOLO26 exports): x1, y1, x2, y2, score, class; no NMS needed."""

    type_key = "end2end"

    @classmethod
    def recognizes(cls, model: ov.Model) -> bool:
        """One [1, N<=1000, 6] output, or an export whose metadata says end2end."""
        dims = _rank3(model)
        if dims is None:
            return False
        return dims[1] == 6 and (dims[0] <= END_TO_END_MAX or bool(ultralytics_meta(model, None, "end2end")))

    def check(self, shapes: Shapes, num_labels: int) -> None:
        """The head is [1, N, 6]."""
        if len(shapes) != 1 or len(shapes[0]) != 3 or shapes[0][2] != 6:
            raise ModelError(f"end-to-end head must be [1, N, 6], got {list(shapes)}")

    def decoder(self, model: ov.Model, meta: dict[str, Any], input_size: tuple[int, int]) -> Decoder:
        """Boxes, score and class come decided by the model."""
        return EndToEndDecoder()


_TF_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def _is_tf_detection(model: ov.Model) -> bool:
    return len(model.outputs) >= 4 and any(
        "num_detections" in n for o in model.outputs for n in o.get_names()
    )


class SsdFamily(Family):
    """SSD: DetectionOutput [1, 1, N, 7], or TF object detection (boxes, scores, classes, num)."""

    type_key = "ssd"

    @classmethod
    def recognizes(cls, model: ov.Model) -> bool:
        """A [.., 7] DetectionOutput, or TF's named outputs."""
        shapes = [o.get_partial_shape() for o in model.outputs]
        if len(shapes) == 1 and shapes[0].rank.get_length() == 4 and shapes[0][3].get_length() == 7:
            return True
        return _is_tf_detection(model)

    @classmethod
    def default_input_size(cls, model: ov.Model) -> tuple[int, int] | None:
        """TF object-detection graphs take any size; SSDLite was trained at 300x300."""
        return (300, 300) if _is_tf_detection(model) else None

    def default_labels(self, model: ov.Model, path: Path) -> list[str] | None:
        """Person detectors (the OMZ SSDs) carry no labels."""
        return ["person"]

    def check(self, shapes: Shapes, num_labels: int) -> None:
        """One [.., 7] output or at least four TF outputs."""
        if not (len(shapes) == 1 and shapes[0][-1] == 7) and len(shapes) < 4:
            raise ModelError(f"ssd outputs must be [1,1,N,7] or boxes/scores/classes/num, got {list(shapes)}")

    def decoder(self, model: ov.Model, meta: dict[str, Any], input_size: tuple[int, int]) -> Decoder:
        """TF graphs count classes from 1 and name their outputs."""
        if len(model.outputs) < 4:
            return SsdDecoder(input_size=input_size, layout="detection_output", label_offset=0)
        order = []
        for name in _TF_OUTPUTS:
            idx = next(
                (i for i, o in enumerate(model.outputs) if any(name in n for n in o.get_names())), None
            )
            if idx is None:
                raise ModelError(f"TF detection model lacks output '{name}'")
            order.append(idx)
        return SsdDecoder(input_size=input_size, layout="tf", label_offset=1, output_order=tuple(order))
