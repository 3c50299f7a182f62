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
from .decoders import DarknetYoloDecoder, Decoder, SsdDecoder, UltralyticsDecoder

Shapes = Sequence[tuple[int, ...]]


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
        """True when the model's outputs have this family's layout."""
        return False

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
        raise ModelError(
            f"cannot tell the model family from outputs {shapes}; "
            f"set model.family to one of {', '.join(sorted(Family.registry))}"
        )
    cls = Family.registry.get(str(key))
    if cls is None:
        raise ModelError(f"unknown model family '{key}' (known: {', '.join(sorted(Family.registry))})")
    return cls()


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
        """One rank-3 output."""
        shapes = [o.get_partial_shape() for o in model.outputs]
        return len(shapes) == 1 and shapes[0].rank.get_length() == 3

    def default_labels(self, model: ov.Model, path: Path) -> list[str] | None:
        """`names` of the export's metadata.yaml, else of its rt_info."""
        meta = path.parent / "metadata.yaml"
        if meta.is_file():
            data = yaml.safe_load(meta.read_text())
            if isinstance(data, dict) and "names" in data:
                return _names(data["names"])
        for rt_path in (("framework", "names"), ("model_info", "names")):
            text = rt_text(model, *rt_path)
            if text:
                return _names(ast.literal_eval(text))
        text = rt_text(model, "model_info", "labels")
        return text.split() if text else None

    def check(self, shapes: Shapes, num_labels: int) -> None:
        """The head is [1, 4+nc, N]."""
        if len(shapes) < 1 or len(shapes[0]) != 3 or shapes[0][1] != 4 + num_labels:
            raise ModelError(f"ultralytics head must be [1, 4+{num_labels}, N], got {list(shapes)}")

    def decoder(self, model: ov.Model, meta: dict[str, Any], input_size: tuple[int, int]) -> Decoder:
        """Boxes are already in input pixels."""
        return UltralyticsDecoder()


_TF_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


class SsdFamily(Family):
    """SSD: DetectionOutput [1, 1, N, 7], or TF object detection (boxes, scores, classes, num)."""

    type_key = "ssd"

    @classmethod
    def recognizes(cls, model: ov.Model) -> bool:
        """A [.., 7] DetectionOutput, or TF's named outputs."""
        shapes = [o.get_partial_shape() for o in model.outputs]
        if len(shapes) == 1 and shapes[0].rank.get_length() == 4 and shapes[0][3].get_length() == 7:
            return True
        return len(shapes) >= 4 and any("num_detections" in n for o in model.outputs for n in o.get_names())

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
