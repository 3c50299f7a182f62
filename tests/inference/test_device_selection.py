"""Device choice: a fake Intel GPU at the OpenVINO Core boundary (none exists here), CPU for real."""

from __future__ import annotations

import threading
from typing import Any

import openvino as ov
import pytest

from edge_agent.config import Config
from edge_agent.errors import DeviceError
from edge_agent.inference.engine import Engine


class FakeGpuCore:
    """A real Core that also lists GPU; compiling for GPU fails, hangs, or runs on the real CPU."""

    def __init__(self, gpu: str) -> None:
        self._core = ov.Core()
        self.gpu = gpu
        self.compiled_for: list[str] = []
        self.release = threading.Event()

    @property
    def available_devices(self) -> list[str]:
        return ["CPU", "GPU", "NPU"] if self.gpu == "npu-works" else ["CPU", "GPU"]

    def compile_model(self, model: ov.Model, device: str, config: dict[str, Any]) -> ov.CompiledModel:
        self.compiled_for.append(device)
        if device == "GPU" and self.gpu in ("broken", "npu-works"):
            raise RuntimeError("[GPU] clGetPlatformIDs failed: no OpenCL platform found")
        if device == "GPU" and self.gpu == "slow":
            self.release.wait(30)  # a compile that takes far longer than compile_timeout
        return self._core.compile_model(model, "CPU", config)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)


def _with_device(config: Config, device: str, timeout: float = 300.0) -> Config:
    return config.model_copy(
        update={"engine": config.engine.model_copy(update={"device": device, "compile_timeout": timeout})}
    )


async def test_auto_falls_back_to_cpu_when_gpu_fails(config: Config, photos: dict[str, bytes]) -> None:
    core = FakeGpuCore("broken")
    engine = Engine(_with_device(config, "auto"), core)  # type: ignore[arg-type]
    await engine.async_start()
    try:
        assert core.compiled_for == ["GPU", "CPU"]
        assert engine.device is not None
        assert engine.device.selected == "CPU" and engine.device.fallback
        assert "GPU" in engine.device.reason and "clGetPlatformIDs" in engine.device.reason
        assert (await engine.detect(photos["bus"])).detections
    finally:
        await engine.async_stop()


async def test_auto_skips_a_gpu_that_compiles_too_slowly(config: Config) -> None:
    core = FakeGpuCore("slow")
    engine = Engine(_with_device(config, "auto", timeout=1.0), core)  # type: ignore[arg-type]
    try:
        await engine.async_start()
        assert engine.device is not None and engine.device.selected == "CPU"
        assert "timed out" in engine.device.reason
    finally:
        core.release.set()
        await engine.async_stop()


async def test_auto_prefers_a_working_gpu_then_npu(config: Config) -> None:
    core = FakeGpuCore("works")
    engine = Engine(_with_device(config, "auto"), core)  # type: ignore[arg-type]
    await engine.async_start()
    try:
        assert engine.device is not None and engine.device.selected == "GPU" and not engine.device.fallback
        # The fake GPU really runs on the CPU, and the engine reports what truly executes.
        assert engine.device.executing == ("CPU",)
    finally:
        await engine.async_stop()
    core = FakeGpuCore("npu-works")
    engine = Engine(_with_device(config, "auto"), core)  # type: ignore[arg-type]
    await engine.async_start()
    try:
        assert core.compiled_for == ["GPU", "NPU"]
        assert engine.device is not None and engine.device.selected == "NPU"
    finally:
        await engine.async_stop()


async def test_explicit_device_failure_is_an_error_not_a_silent_fallback(config: Config) -> None:
    engine = Engine(_with_device(config, "GPU"), FakeGpuCore("broken"))  # type: ignore[arg-type]
    with pytest.raises(DeviceError, match=r"GPU failed: .*clGetPlatformIDs"):
        await engine.async_start()
    await engine.async_stop()


async def test_cpu_for_real_reports_execution_device(engine: Engine) -> None:
    assert engine.device is not None
    assert engine.device.selected == "CPU" and engine.device.executing == ("CPU",)
    assert engine.num_requests >= 1


async def test_model_cache_dir_is_filled(config: Config) -> None:
    engine = Engine(config)
    await engine.async_start()
    await engine.async_stop()
    from pathlib import Path

    assert any(Path(config.engine.cache_dir).iterdir()), "compiled model should be cached for warm starts"


class ListedGpuCore(FakeGpuCore):
    """Lists a GPU (none exists here); compiling for it is OpenVINO's real GPU plugin, which fails for real."""

    def compile_model(self, model: ov.Model, device: str, config: dict[str, Any]) -> ov.CompiledModel:
        self.compiled_for.append(device)
        return self._core.compile_model(model, device, config if device == "CPU" else {})


async def test_gpu_failure_keeps_openvinos_cause_in_reason_health_and_status(config: Config) -> None:
    from edge_agent.inference.device import why

    engine = Engine(_with_device(config, "auto"), ListedGpuCore("real"))  # type: ignore[arg-type]
    await engine.async_start()
    try:
        assert engine.device is not None and engine.device.fallback
        reason = engine.device.reason
        # The real plugin's message starts "Exception from src/inference/src/cpp/core.cpp:117:"; the cause follows.
        assert "Exception from" not in reason and "core.cpp" not in reason, reason
        assert "[GPU]" in reason and "no supported devices found" in reason, reason
    finally:
        await engine.async_stop()
    missing_lib = RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:117:\nCannot load library "
        '"/opt/edge-agent/lib/python3.11/site-packages/openvino/libs/libopenvino_intel_gpu_plugin.so": '
        "libOpenCL.so.1: cannot open shared object file: No such file or directory\n"
    )
    assert why(missing_lib) == (
        "Cannot load library libopenvino_intel_gpu_plugin.so: libOpenCL.so.1: cannot open shared object file: "
        "No such file or directory"
    )
