"""Turning a loaded model into a compiled one: preprocessing in the graph, performance hint, model cache."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor

from ..config import EngineConfig
from ..errors import ModelError
from .models.loader import LoadedModel

log = logging.getLogger(__name__)


def with_preprocessing(loaded: LoadedModel) -> ov.Model:
    """Compile u8 NHWC RGBX → the model's own layout, channels, type and scale into the graph (PrePostProcessor).

    RGBX rather than RGB: the letterbox moves 4-byte pixels, and benchmark_app on both IRs shows the
    4-channel input costs the graph nothing (23.1 vs 23.2-23.5 ms median).
    """
    try:
        return _build_preprocessing(loaded)
    except RuntimeError as exc:  # a model whose input the conversion cannot reach: one line, naming the file
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        raise ModelError(
            f"{loaded.info.path}: cannot convert frames to its input: {lines[-1] if lines else exc!r}"
        ) from None


def _build_preprocessing(loaded: LoadedModel) -> ov.Model:
    ppp = PrePostProcessor(loaded.model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
        ColorFormat.RGBX
    )
    ppp.input().model().set_layout(ov.Layout(loaded.input_layout))
    ppp.input().preprocess().convert_color(ColorFormat.RGB)
    if loaded.model.input(0).get_element_type() != ov.Type.u8:
        ppp.input().preprocess().convert_element_type(ov.Type.f32).scale(loaded.scale)
    for i in range(len(loaded.model.outputs)):
        ppp.output(i).tensor().set_element_type(ov.Type.f32)
    return ppp.build()


def resolve_hint(setting: str) -> str:
    """'auto' → LATENCY on small boxes (up to 4 cores), THROUGHPUT on bigger ones.

    Measured on 2 cores (benchmark_app, same IR): LATENCY gives 97% of THROUGHPUT's FPS (40.5 vs 41.7) at half
    the per-frame latency (23.6 vs 46.6 ms), so a real-time box is better served by LATENCY; the extra streams
    of THROUGHPUT pay off only with more cores.
    """
    if setting != "auto":
        return setting
    return "THROUGHPUT" if (os.cpu_count() or 1) > 4 else "LATENCY"


def compile_properties(eng: EngineConfig, hint: str, device: str) -> dict[str, Any]:
    """OpenVINO compile properties for one device."""
    props: dict[str, Any] = {"PERFORMANCE_HINT": hint}
    kind = device.split(".", maxsplit=1)[0]
    if kind == "CPU":
        if eng.cpu_threads:
            props["INFERENCE_NUM_THREADS"] = eng.cpu_threads
        # NUMA / HYBRID_AWARE (the legacy CPU_BIND_THREAD values) are what the plugin does by default now.
        if isinstance(eng.cpu_pinning, bool):
            props["ENABLE_CPU_PINNING"] = eng.cpu_pinning
    if eng.inference_precision != "auto" and kind in ("CPU", "GPU"):
        props["INFERENCE_PRECISION_HINT"] = eng.inference_precision
    if eng.num_requests and kind in ("CPU", "GPU"):
        props["PERFORMANCE_HINT_NUM_REQUESTS"] = eng.num_requests
    return props


def compute_precision(compiled: ov.CompiledModel) -> str:
    """The precision a compiled model computes in (bf16 for an FP32 IR on AMX CPUs), or '' if not reported."""
    try:
        return str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())
    except RuntimeError:  # AUTO/MULTI and some plugins do not report it
        return ""


def enable_cache(core: ov.Core, eng: EngineConfig) -> None:
    """Point the Core's model cache at engine.cache_dir when it is enabled and writable."""
    if not eng.cache_enabled:
        return
    path = Path(eng.cache_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("model cache disabled: cannot create %s (%s)", path, exc.strerror)
        return
    if not os.access(path, os.W_OK):
        log.warning("model cache disabled: %s is not writable", path)
        return
    core.set_property({"CACHE_DIR": str(path)})
