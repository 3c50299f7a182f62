"""Inference device selection: a working Intel GPU, then NPU, else CPU, with the reason recorded."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np
import openvino as ov

from ..errors import DeviceError
from .contract import DeviceChoice

log = logging.getLogger(__name__)
ACCELERATOR_ORDER = ("GPU", "NPU")


def candidates(available: list[str]) -> list[str]:
    """Accelerators worth trying for 'auto', best first (GPU.0 before GPU.1, GPUs before NPUs)."""
    return [d for kind in ACCELERATOR_ORDER for d in sorted(available) if d.split(".")[0] == kind]


def executing_devices(compiled: ov.CompiledModel, fallback: str) -> tuple[str, ...]:
    """The devices that really execute (EXECUTION_DEVICES), or the compile target if unsupported."""
    try:
        return tuple(str(d) for d in compiled.get_property("EXECUTION_DEVICES"))
    except RuntimeError:
        return (fallback,)


def warm_up(compiled: ov.CompiledModel) -> None:
    """One inference on zeros: proves the device really runs the model, not just compiles it."""
    request = compiled.create_infer_request()
    port = compiled.input(0)
    request.infer({0: np.zeros(tuple(port.get_shape()), dtype=port.get_element_type().to_dtype())})


CompileFn = Callable[[str], ov.CompiledModel]


async def _try(device: str, compile_fn: CompileFn, executor: Executor, timeout: float) -> ov.CompiledModel:
    loop = asyncio.get_running_loop()

    def work() -> ov.CompiledModel:
        compiled = compile_fn(device)
        warm_up(compiled)
        return compiled

    return await asyncio.wait_for(loop.run_in_executor(executor, work), timeout)


# OpenVINO wraps the cause in lines naming its own source files; the cause is what is left.
_WRAPPER_LINE = re.compile(r"(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:)")
_LONG_PATH = re.compile(r'"?/(?:[^\s":/]+/)+([^\s":/]+)"?')


def why(exc: BaseException) -> str:
    """The reason a device failed, in one line: OpenVINO's own cause (e.g. libOpenCL.so.1 missing), not
    its first line ('Exception from src/inference/src/cpp/core.cpp:117:'); library paths cut to the file name."""
    if isinstance(exc, TimeoutError):
        return "compile and warm-up timed out"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    causes = [line for line in lines if not _WRAPPER_LINE.fullmatch(line)] or lines
    text = _LONG_PATH.sub(r"\1", " ".join(causes))
    return text[:300] if text else type(exc).__name__


async def async_select(
    core: ov.Core,
    requested: str,
    compile_fn: CompileFn,
    executor: Executor,
    timeout: float,
    on_attempt: Callable[[str], Any] | None = None,
) -> tuple[ov.CompiledModel, DeviceChoice]:
    """Compile for the requested device ('auto' = try accelerators, then CPU) and warm up there."""
    attempts = candidates(list(core.available_devices)) if requested.lower() == "auto" else [requested]
    failures: list[str] = []
    for device in attempts:
        if on_attempt:
            on_attempt(device)
        try:
            compiled = await _try(device, compile_fn, executor, timeout)
        except (RuntimeError, TimeoutError, ValueError) as exc:
            if requested.lower() != "auto":
                raise DeviceError(f"device {device} failed: {why(exc)}") from None
            failures.append(f"{device}: {why(exc)}")
            log.warning("device %s unusable: %s", device, why(exc))
            continue
        reason = (
            "explicitly configured" if requested.lower() != "auto" else f"{device} compiled and ran a warm-up"
        )
        return compiled, DeviceChoice(requested, device, executing_devices(compiled, device), reason, False)
    if on_attempt:
        on_attempt("CPU")
    try:
        compiled = await _try("CPU", compile_fn, executor, timeout)
    except (RuntimeError, TimeoutError, ValueError) as exc:
        raise DeviceError(f"CPU failed: {why(exc)}; earlier: {'; '.join(failures) or 'none'}") from None
    reason = "no Intel GPU or NPU found" if not failures else "fell back to CPU: " + "; ".join(failures)
    return compiled, DeviceChoice(
        requested, "CPU", executing_devices(compiled, "CPU"), reason, bool(failures)
    )
