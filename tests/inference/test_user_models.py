"""Users' own models: dynamic input sizes, classic YOLOv5 and end-to-end heads, one-line model errors.

Where a registry package ships the layout (NudeNet's YOLOv8 ONNX with dynamic axes) it is used as is;
for YOLOv5 [1, N, 5+nc] and end-to-end [1, N, 6] heads no package does, so a small real network of that
output layout is built with the opset API, and its boxes are checked against hand-computed ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from edge_agent import cli
from edge_agent.config import Config
from edge_agent.errors import ModelError
from edge_agent.inference.contract import DetectParams
from edge_agent.inference.engine import Engine
from tests.conftest import encode, package_dir


def _with(config: Config, path: Path, **model: object) -> Config:
    return config.model_copy(update={"model": config.model.model_copy(update={"path": str(path), **model})})


def _head_net(path: Path, rows: np.ndarray, dynamic: bool = False) -> Path:
    """A 64x64 (or dynamic) image network whose single output is `rows`, plus zero times the image mean.

    The image term keeps the output a function of the input, so OpenVINO runs a real graph per frame.
    """
    image = ops.parameter([-1, 3, -1, -1] if dynamic else [1, 3, 64, 64], np.float32, name="images")
    mean = ops.reduce_mean(image, ops.constant(np.array([1, 2, 3], np.int64)), True)  # [N,1,1,1]
    zero = ops.multiply(ops.reshape(mean, ops.constant(np.array([-1, 1, 1], np.int64)), False), np.float32(0))
    out = ops.add(ops.constant(rows[None].astype(np.float32)), zero)
    ov.save_model(ov.Model([out], [image], path.stem), path)
    return path


def _frame_640x480() -> bytes:
    rng = np.random.default_rng(1)
    return encode(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))


# A 640x480 frame letterboxed into 64x64: scale 0.1, 64x48 picture, bars of 8 rows above and below.
def _to_frame(x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
    return x1 / 0.1, (y1 - 8) / 0.1, x2 / 0.1, (y2 - 8) / 0.1


async def test_classic_yolov5_head(config: Config, tmp_path: Path) -> None:
    rows = np.zeros((1200, 7), np.float32)  # [N, 5+2]: cx, cy, w, h, objectness, two class scores
    rows[5] = (32, 32, 16, 8, 0.9, 0.2, 0.8)  # class 1, score 0.72, box 24,28..40,36 in input pixels
    rows[900] = (10, 20, 4, 4, 0.5, 0.9, 0.1)  # class 0, score 0.45
    rows[901] = (10, 20, 4, 4, 0.3, 0.9, 0.1)  # objectness below the threshold: dropped
    path = _head_net(tmp_path / "v5.xml", rows)
    engine = Engine(_with(config, path, labels=["cat", "dog"]))
    await engine.async_start()
    try:
        assert engine.model.family == "yolov5"
        result = await engine.detect(_frame_640x480(), DetectParams(confidence=0.4))
    finally:
        await engine.async_stop()
    assert [(d.label, round(d.confidence, 3)) for d in result.detections] == [("dog", 0.72), ("cat", 0.45)]
    np.testing.assert_allclose(
        [d.box for d in result.detections], [_to_frame(24, 28, 40, 36), _to_frame(8, 18, 12, 22)], atol=1e-3
    )


async def test_end_to_end_head_keeps_the_models_own_boxes(config: Config, tmp_path: Path) -> None:
    rows = np.zeros((300, 6), np.float32)  # x1, y1, x2, y2, score, class: already suppressed by the model
    rows[0] = (8, 16, 24, 48, 0.9, 1)
    rows[1] = (9, 17, 25, 49, 0.8, 1)  # overlaps the first at IoU ~0.86: our NMS would have removed it
    rows[2] = (40, 10, 60, 30, 0.2, 0)  # below the threshold
    path = _head_net(tmp_path / "e2e.xml", rows)
    engine = Engine(_with(config, path, labels=["person", "helmet"]))
    await engine.async_start()
    try:
        assert engine.model.family == "end2end"
        result = await engine.detect(_frame_640x480(), DetectParams(confidence=0.5))
    finally:
        await engine.async_stop()
    assert [(d.label, round(d.confidence, 3)) for d in result.detections] == [
        ("helmet", 0.9),
        ("helmet", 0.8),
    ]
    np.testing.assert_allclose(
        [d.box for d in result.detections], [_to_frame(8, 16, 24, 48), _to_frame(9, 17, 25, 49)], atol=1e-3
    )


async def test_nudenet_dynamic_axes_sized_from_its_metadata(config: Config, photos: dict[str, bytes]) -> None:
    onnx = package_dir("nudenet") / "320n.onnx"  # input [?,3,?,?], output [?,22,?]; imgsz [320, 320]
    engine = Engine(_with(config, onnx))
    await engine.async_start()
    try:
        assert engine.model.input_size == (320, 320) and engine.model.family == "ultralytics"
        assert len(engine.model.labels) == 18 and "FACE_MALE" in engine.model.labels
        result = await engine.detect(photos["zidane"], DetectParams(confidence=0.25))
    finally:
        await engine.async_stop()
    faces = [d for d in result.detections if d.label == "FACE_MALE"]
    assert faces, result.detections
    x1, _, _, y2 = faces[0].box
    assert x1 > 640 and y2 < 400  # the face of the man on the right, in the frame's upper half


async def test_dynamic_input_without_a_declared_size(config: Config, tmp_path: Path) -> None:
    rows = np.zeros((1200, 7), np.float32)
    rows[0] = (32, 32, 16, 8, 0.9, 0.2, 0.8)
    path = _head_net(tmp_path / "dyn.xml", rows, dynamic=True)
    with pytest.raises(
        ModelError, match=r"dyn\.xml: the image input has a dynamic size .* model\.input_size"
    ):
        await Engine(_with(config, path, labels=["cat", "dog"])).async_start()
    engine = Engine(_with(config, path, labels=["cat", "dog"], input_size=(64, 64)))
    await engine.async_start()
    try:
        assert engine.model.input_size == (64, 64)
        result = await engine.detect(_frame_640x480())
    finally:
        await engine.async_stop()
    assert [d.box for d in result.detections] == [pytest.approx(_to_frame(24, 28, 40, 36))]
    # An Ultralytics export's metadata.yaml beside the file declares the size ([h, w]) and the names.
    (tmp_path / "metadata.yaml").write_text("imgsz: [64, 64]\nnames: {0: cat, 1: dog}\n")
    engine = Engine(_with(config, path))
    await engine.async_start()
    try:
        assert engine.model.input_size == (64, 64) and engine.model.labels == ("cat", "dog")
    finally:
        await engine.async_stop()


def _classifier(path: Path) -> Path:
    image = ops.parameter([1, 3, 64, 64], np.float32, name="images")
    pooled = ops.reduce_mean(image, ops.constant(np.array([2, 3], np.int64)), False)  # [1, 3] "classes"
    ov.save_model(ov.Model([ops.softmax(pooled, 1)], [image], "classifier"), path)
    return path


@pytest.mark.parametrize("command", ["inspect", "detect", "serve"])
def test_model_errors_are_one_line_naming_the_file(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _classifier(tmp_path / "mobilenet.xml")
    monkeypatch.setenv("MODEL_PATH", str(path))
    monkeypatch.setenv("EDGE_AGENT_MDNS__ENABLED", "false")
    argv = {
        "inspect": ["model", "inspect", str(path)],
        "detect": ["detect", str(tmp_path / "frame.jpg")],
        "serve": ["serve", "--host", "127.0.0.1", "--port", "0"],
    }[command]
    (tmp_path / "frame.jpg").write_bytes(_frame_640x480())
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(path) in err[0] and "not an object detector" in err[0], err
