"""A model's image input: its layout, and its size when the file leaves it dynamic (then reshaped to it)."""

from __future__ import annotations

from pathlib import Path

import openvino as ov

from ...errors import ModelError
from .families import Family, ultralytics_meta


def input_layout(model: ov.Model) -> str:
    """'NCHW' or 'NHWC' of the model's single 4-D, 3-channel image input."""
    if len(model.inputs) != 1:
        raise ModelError(f"detector must have exactly one image input, found {len(model.inputs)}")
    shape = model.input(0).get_partial_shape()
    if shape.rank.is_dynamic or shape.rank.get_length() != 4:
        raise ModelError(f"image input must be 4-D, got {shape}")
    if shape[3].is_static and shape[3].get_length() == 3:
        return "NHWC"
    if shape[1].is_static and shape[1].get_length() == 3:
        return "NCHW"
    raise ModelError(f"image input must have 3 channels (NCHW or NHWC), got {shape}")


def _declared_size(model: ov.Model, path: Path) -> tuple[int, int] | None:
    """(w, h) from the export's `imgsz` (metadata.yaml or rt_info; Ultralytics writes [h, w] or one int)."""
    imgsz = ultralytics_meta(model, path, "imgsz")
    if isinstance(imgsz, int):
        return imgsz, imgsz
    if isinstance(imgsz, list | tuple) and len(imgsz) == 2 and all(isinstance(v, int) for v in imgsz):
        return int(imgsz[1]), int(imgsz[0])
    return None


def fix_input_size(
    model: ov.Model, path: Path, layout: str, configured: tuple[int, int] | None
) -> tuple[int, int]:
    """The input's (w, h); a dynamic input is reshaped (batch 1) before anything compiles it."""
    shape = model.input(0).get_partial_shape()
    h, w = (shape[1], shape[2]) if layout == "NHWC" else (shape[2], shape[3])
    size = (w.get_length(), h.get_length()) if w.is_static and h.is_static else None
    if size is None:
        size = (
            configured
            or _declared_size(model, path)
            or next((s for cls in Family.registry.values() if (s := cls.default_input_size(model))), None)
        )
    if size is None:
        raise ModelError(
            f"the image input has a dynamic size {shape} and the model does not declare one "
            "(no imgsz in its metadata.yaml or rt_info); set model.input_size = [width, height]"
        )
    if shape.is_dynamic:
        dims = [1, size[1], size[0], 3] if layout == "NHWC" else [1, 3, size[1], size[0]]
        try:
            model.reshape({model.input(0).get_any_name(): dims})
        except RuntimeError as exc:
            raise ModelError(f"cannot reshape the input to {dims}: {_first_line(exc)}") from None
    return size


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("Exception")]
    return lines[-1] if lines else type(exc).__name__
