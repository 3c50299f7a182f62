"""Darknet importer: builds an OpenVINO model from a .cfg/.weights pair with the opset API."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import openvino.opset13 as ops
from openvino import Output

from ...errors import ModelError

BN_EPS = 1e-5  # darknet's normalize_cpu epsilon
LEAKY_SLOPE = 0.1


@dataclass
class Section:
    """One [section] of a Darknet .cfg with its key=value options."""

    kind: str
    options: dict[str, str] = field(default_factory=dict)

    def get_int(self, key: str, default: int | None = None) -> int:
        """Integer option, or the default; a missing required option is a ModelError."""
        if key not in self.options:
            if default is None:
                raise ModelError(f"[{self.kind}] section lacks '{key}'")
            return default
        return int(self.options[key])

    def get_ints(self, key: str) -> list[int]:
        """Comma-separated integer list option."""
        return [int(v) for v in self.options.get(key, "").split(",") if v.strip()]


def parse_cfg(text: str) -> list[Section]:
    """Parse Darknet .cfg text into sections (the first one is [net])."""
    sections: list[Section] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            sections.append(Section(line[1:-1].strip()))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
        else:
            raise ModelError(f"cannot parse .cfg line: {raw!r}")
    if not sections or sections[0].kind not in ("net", "network"):
        raise ModelError(".cfg must start with a [net] section")
    return sections


class WeightReader:
    """Sequential reader over a .weights file's float32 payload."""

    def __init__(self, path: Path) -> None:
        raw = path.read_bytes()
        major, minor, _rev = np.frombuffer(raw[:12], dtype=np.int32)
        seen_bytes = 8 if (major * 10 + minor) >= 2 and major < 1000 and minor < 1000 else 4
        self.data = np.frombuffer(raw, dtype=np.float32, offset=12 + seen_bytes)
        self.pos = 0

    def take(self, count: int) -> np.ndarray:
        """Next `count` floats; running out means the .cfg and .weights do not match."""
        if self.pos + count > self.data.size:
            raise ModelError("weights file is shorter than the .cfg requires (cfg/weights mismatch)")
        out = self.data[self.pos : self.pos + count]
        self.pos += count
        return out

    def check_consumed(self) -> None:
        """All weights must be used; leftovers also mean a mismatch."""
        if self.pos != self.data.size:
            raise ModelError(
                f"weights file has {self.data.size - self.pos} unused values (cfg/weights mismatch)"
            )


@dataclass
class YoloHead:
    """What the decoder needs to know about one [yolo] output."""

    name: str
    anchors: list[tuple[float, float]]
    num_classes: int


def _conv(x: Output, sec: Section, channels: int, reader: WeightReader) -> tuple[Output, int]:
    filters, size = sec.get_int("filters"), sec.get_int("size", 1)
    stride, pad = sec.get_int("stride", 1), sec.get_int("pad", 0)
    padding = size // 2 if pad else sec.get_int("padding", 0)
    bias = reader.take(filters).copy()
    if sec.get_int("batch_normalize", 0):
        scale, mean, var = reader.take(filters), reader.take(filters), reader.take(filters)
        weights = reader.take(filters * channels * size * size).reshape(filters, channels, size, size)
        factor = scale / np.sqrt(var + BN_EPS)
        weights = weights * factor[:, None, None, None]
        bias = bias - mean * factor
    else:
        weights = reader.take(filters * channels * size * size).reshape(filters, channels, size, size)
    y = ops.convolution(
        x,
        ops.constant(weights.astype(np.float32)),
        [stride, stride],
        [padding, padding],
        [padding, padding],
        [1, 1],
    )
    y = ops.add(y, ops.constant(bias.astype(np.float32).reshape(1, filters, 1, 1)))
    activation = sec.options.get("activation", "linear")
    if activation == "leaky":
        y = ops.prelu(y, ops.constant(np.array([LEAKY_SLOPE], dtype=np.float32)))
    elif activation == "relu":
        y = ops.relu(y)
    elif activation == "logistic":
        y = ops.sigmoid(y)
    elif activation != "linear":
        raise ModelError(f"unsupported activation '{activation}'")
    return y.output(0), filters


def _maxpool(x: Output, sec: Section) -> Output:
    size, stride = sec.get_int("size", 2), sec.get_int("stride", 2)
    pad_total = sec.get_int("padding", size - 1)
    begin = pad_total // 2
    return ops.max_pool(
        x,
        [stride, stride],
        [1, 1],
        [begin, begin],
        [pad_total - begin] * 2,
        [size, size],
        rounding_type="floor",
    ).output(0)


def _upsample(x: Output, sec: Section) -> Output:
    stride = float(sec.get_int("stride", 2))
    return ops.interpolate(
        x,
        ops.constant(np.array([1.0, 1.0, stride, stride], dtype=np.float32)),
        mode="nearest",
        shape_calculation_mode="scales",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    ).output(0)


def build_model(cfg_text: str, weights_path: Path, labels: list[str]) -> tuple[ov.Model, list[YoloHead]]:
    """Build the network described by cfg_text with weights; returns the model and its YOLO heads."""
    sections = parse_cfg(cfg_text)
    net = sections[0]
    width, height, chans = net.get_int("width"), net.get_int("height"), net.get_int("channels", 3)
    param = ops.parameter([1, chans, height, width], np.float32, name="images")
    reader = WeightReader(weights_path)
    outputs: list[Output] = []
    widths: list[int] = []
    heads: list[YoloHead] = []
    results: list[Output] = []
    x, c = param.output(0), chans
    for index, sec in enumerate(sections[1:]):
        if sec.kind == "convolutional":
            x, c = _conv(x, sec, c, reader)
        elif sec.kind == "maxpool":
            x = _maxpool(x, sec)
        elif sec.kind == "upsample":
            x = _upsample(x, sec)
        elif sec.kind == "route":
            picked = [i if i >= 0 else index + i for i in sec.get_ints("layers")]
            x = (
                outputs[picked[0]]
                if len(picked) == 1
                else ops.concat([outputs[i] for i in picked], 1).output(0)
            )
            c = sum(widths[i] for i in picked)
        elif sec.kind == "shortcut":
            src = sec.get_int("from")
            x = ops.add(x, outputs[src if src >= 0 else index + src]).output(0)
        elif sec.kind == "yolo":
            heads.append(_yolo_head(sec, len(heads), c))
            x.get_node().set_friendly_name(heads[-1].name)
            results.append(x)
        else:
            raise ModelError(f"unsupported Darknet layer [{sec.kind}]")
        outputs.append(x)
        widths.append(c)
    reader.check_consumed()
    if not heads:
        raise ModelError("the .cfg has no [yolo] layer")
    if any(h.num_classes != len(labels) for h in heads):
        raise ModelError(f"the .cfg has {heads[0].num_classes} classes but the names file has {len(labels)}")
    for head, out in zip(heads, results, strict=False):
        out.get_tensor().set_names({head.name})
    model = ov.Model(results, [param], "yolo-darknet")
    return model, heads


def _yolo_head(sec: Section, index: int, channels: int) -> YoloHead:
    flat = sec.get_ints("anchors")
    pairs = [(float(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]
    mask = sec.get_ints("mask") or list(range(len(pairs)))
    classes = sec.get_int("classes")
    if channels != len(mask) * (5 + classes):
        raise ModelError(
            f"[yolo] #{index} expects {len(mask) * (5 + classes)} input channels, got {channels}"
        )
    return YoloHead(name=f"yolo_{index}", anchors=[pairs[m] for m in mask], num_classes=classes)


def import_darknet(cfg: Path, weights: Path, names: Path, output: Path) -> Path:
    """Import a Darknet model and save it as IR (FP16 weights) with labels and anchors in rt_info."""
    for p in (cfg, weights, names):
        if not p.is_file():
            raise ModelError(f"missing Darknet file: {p}")
    labels = [ln.strip() for ln in names.read_text().splitlines() if ln.strip()]
    model, heads = build_model(cfg.read_text(), weights, labels)
    meta: dict[str, Any] = {
        "family": "darknet",
        "labels": labels,
        "heads": [{"name": h.name, "anchors": h.anchors} for h in heads],
        "source": cfg.stem,
    }
    model.set_rt_info(json.dumps(meta), ["edge_agent", "meta"])
    output.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, output, compress_to_fp16=True)
    return output
