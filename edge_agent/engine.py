"""The inference engine: `await engine.detect(jpeg, params) -> Result` over N async OpenVINO requests."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from openvino.preprocess import ColorFormat, PrePostProcessor

from .config import Config
from .device import async_select
from .errors import EngineNotRunning, InferenceError
from .frames import FrameBuffers, check_jpeg, letterbox_into
from .models.loader import LoadedModel, load_model
from .pool import FairPool
from .postprocess import to_detections
from .stats import LatencyWindow
from .types import DetectParams, DeviceChoice, ModelInfo, Result, Timings

log = logging.getLogger(__name__)
INITIAL_DECODE_PIXELS = 1280 * 720


def with_preprocessing(loaded: LoadedModel) -> ov.Model:
    """Compile u8 NHWC RGB → the model's own layout, type and scale into the graph (PrePostProcessor)."""
    ppp = PrePostProcessor(loaded.model)
    ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(
        ColorFormat.RGB
    )
    ppp.input().model().set_layout(ov.Layout(loaded.input_layout))
    if loaded.model.input(0).get_element_type() != ov.Type.u8:
        ppp.input().preprocess().convert_element_type(ov.Type.f32).scale(loaded.scale)
    for i in range(len(loaded.model.outputs)):
        ppp.output(i).tensor().set_element_type(ov.Type.f32)
    return ppp.build()


def resolve_hint(setting: str) -> str:
    """'auto' → THROUGHPUT on multi-core boxes (streams overlap frames), LATENCY on a single core."""
    if setting != "auto":
        return setting
    return "THROUGHPUT" if (os.cpu_count() or 1) > 1 else "LATENCY"


@dataclass
class _Slot:
    """One infer request with its preallocated input tensor and decode buffer."""

    request: ov.InferRequest
    image: np.ndarray  # [1, H, W, 3] u8, shared with the request's input tensor
    buffers: FrameBuffers
    future: asyncio.Future[None] | None = None


class Engine:
    """Owns the compiled model, its infer requests and their buffers."""

    def __init__(self, config: Config, core: ov.Core | None = None) -> None:
        self._cfg = config
        self._core = core
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._free: FairPool[_Slot] = FairPool()
        self._slots: list[_Slot] = []
        self._loaded: LoadedModel | None = None
        self._compiled: ov.CompiledModel | None = None
        self._stalled = False
        self.device: DeviceChoice | None = None
        self.in_flight = 0
        self.last_success: float | None = None
        self.latency = LatencyWindow()
        self.hint = resolve_hint(config.engine.performance_hint)
        self.on_status: Callable[[str], Any] | None = None  # e.g. systemd STATUS= updates while compiling

    @property
    def model(self) -> ModelInfo:
        """The loaded model's description."""
        if self._loaded is None:
            raise EngineNotRunning("engine not started")
        return self._loaded.info

    @property
    def num_requests(self) -> int:
        """How many infer requests run in parallel."""
        return len(self._slots)

    @property
    def running(self) -> bool:
        """True between a successful start and stop."""
        return bool(self._slots) and self._executor is not None

    def _compile_config(self, device: str) -> dict[str, Any]:
        eng = self._cfg.engine
        props: dict[str, Any] = {"PERFORMANCE_HINT": self.hint}
        if device.split(".")[0] == "CPU":
            if eng.cpu_threads:
                props["INFERENCE_NUM_THREADS"] = eng.cpu_threads
            if eng.cpu_pinning is not None:
                props["ENABLE_CPU_PINNING"] = eng.cpu_pinning
        if eng.num_requests and device.split(".")[0] in ("CPU", "GPU"):
            props["PERFORMANCE_HINT_NUM_REQUESTS"] = eng.num_requests
        return props

    def _enable_cache(self, core: ov.Core) -> None:
        if not self._cfg.engine.cache_enabled:
            return
        path = Path(self._cfg.engine.cache_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("model cache disabled: cannot create %s (%s)", path, exc.strerror)
            return
        if not os.access(path, os.W_OK):
            log.warning("model cache disabled: %s is not writable", path)
            return
        core.set_property({"CACHE_DIR": str(path)})

    def _status(self, text: str) -> None:
        log.info(text)
        if self.on_status:
            self.on_status(text)

    async def async_start(self) -> None:
        """Load and validate the model, pick a device, compile, warm up and preallocate buffers."""
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="edge-agent-engine")
        try:
            await self._async_load()
        except BaseException:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            raise

    async def _async_load(self) -> None:
        assert self._loop is not None and self._executor is not None
        core = self._core or ov.Core()
        self._enable_cache(core)
        m = self._cfg.model
        self._status(f"loading model {m.path}")
        loaded = await self._loop.run_in_executor(
            self._executor, lambda: load_model(core, m.path, m.family, m.labels, m.name)
        )
        model = await self._loop.run_in_executor(self._executor, with_preprocessing, loaded)
        compiled, self.device = await async_select(
            core, self._cfg.engine.device, lambda d: core.compile_model(model, d, self._compile_config(d)),
            self._executor, self._cfg.engine.compile_timeout,
            on_attempt=lambda d: self._status(f"compiling model on {d}"),
        )
        self._loaded, self._compiled = loaded, compiled
        self._make_slots(compiled)
        self.last_success = time.monotonic()
        self._status(f"model {loaded.info.name} ready on {','.join(self.device.executing)}")

    def _make_slots(self, compiled: ov.CompiledModel) -> None:
        wanted = self._cfg.engine.num_requests or int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        count = max(1, wanted) if self._cfg.engine.async_inference else 1
        shape = tuple(compiled.input(0).get_shape())
        for _ in range(count):
            request = compiled.create_infer_request()
            image = np.zeros(shape, np.uint8)
            request.set_input_tensor(ov.Tensor(image, shared_memory=True))
            slot = _Slot(request, image, FrameBuffers(INITIAL_DECODE_PIXELS))
            request.set_callback(self._on_done, slot)
            self._slots.append(slot)
            self._free.put(slot)

    def _on_done(self, slot: _Slot) -> None:
        # Runs on an OpenVINO thread: hand over to the loop, never touch asyncio objects here directly.
        fut, loop = slot.future, self._loop
        if fut is None or loop is None or self._stalled:
            return
        try:
            slot.request.get_output_tensor(0)  # raises if the request ended in error
        except RuntimeError as exc:
            loop.call_soon_threadsafe(_fail, fut, InferenceError(f"inference failed: {exc}"))
            return
        loop.call_soon_threadsafe(_resolve, fut)

    async def async_stop(self, timeout: float = 10.0) -> None:
        """Wait (bounded) for in-flight requests, then release the model and threads."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline and not self._stalled:
            await asyncio.sleep(0.01)
        if self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor, self._slots, self._compiled = None, [], None
        self._free.clear()

    def inject_stall(self) -> None:
        """Fault injection for tests: every later inference hangs forever (its result is never delivered)."""
        log.warning("FAULT INJECTION: inference stalled on request")
        self._stalled = True

    async def _acquire(self) -> _Slot:
        if not self.running:
            raise EngineNotRunning("engine is not running")
        slot = await self._free.get()
        self.in_flight += 1
        return slot

    def _release(self, slot: _Slot) -> None:
        self.in_flight -= 1
        slot.future = None
        if self.running:
            self._free.put(slot)

    def _prepare(self, slot: _Slot, jpeg: bytes, width: int, height: int) -> tuple[float, float, float, int, int, float]:
        """Decode and letterbox into the slot's tensor, then start inference (worker thread)."""
        t0 = time.perf_counter()
        in_h, in_w = slot.image.shape[1:3]
        decoded = slot.buffers.decode_into(jpeg, width, height, in_w, in_h)
        t1 = time.perf_counter()
        scale, dx, dy = letterbox_into(decoded, slot.image, slot.buffers)
        t2 = time.perf_counter()
        slot.request.start_async()
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3, scale * decoded.shape[1] / width, dx, dy, t2

    def _finish(self, slot: _Slot, scale: float, dx: int, dy: int, size: tuple[int, int],
                params: DetectParams) -> list[Any]:
        assert self._loaded is not None
        outputs = [slot.request.get_output_tensor(i).data for i in range(len(self._loaded.model.outputs))]
        det = self._cfg.detection
        return to_detections(
            self._loaded.decoder(outputs, params.confidence if params.confidence is not None else det.confidence),
            self._loaded.info.labels, scale, dx, dy, size,
            params.iou if params.iou is not None else det.iou, det.max_detections, params.classes,
        )

    async def detect(self, jpeg: bytes, params: DetectParams | None = None) -> Result:
        """Detect objects in one JPEG frame; raises a FrameError for bad input, InferenceError on failure."""
        params = params or DetectParams()
        t0 = time.perf_counter()
        eng = self._cfg.engine
        width, height = check_jpeg(jpeg, eng.max_frame_bytes, eng.max_frame_pixels)
        slot = await self._acquire()
        assert self._loop is not None and self._executor is not None
        try:
            t1 = time.perf_counter()
            slot.future = self._loop.create_future()
            decode_ms, pre_ms, scale, dx, dy, t_start = await self._loop.run_in_executor(
                self._executor, self._prepare, slot, jpeg, width, height
            )
            await slot.future
            t3 = time.perf_counter()
            detections = await self._loop.run_in_executor(
                self._executor, self._finish, slot, scale, dx, dy, (width, height), params
            )
        except RuntimeError as exc:  # OpenVINO errors from start_async or reading outputs
            raise InferenceError(f"inference failed: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
        finally:
            self._release(slot)
        t4 = time.perf_counter()
        self.last_success = time.monotonic()
        timings = Timings(queue=(t1 - t0) * 1e3, decode=decode_ms, preprocess=pre_ms,
                          inference=(t3 - t_start) * 1e3, postprocess=(t4 - t3) * 1e3, total=(t4 - t0) * 1e3)
        self.latency.add(timings.total)
        return Result(detections=detections, image_size=(width, height), timings=timings)

    async def async_probe(self) -> None:
        """One inference on whatever a request holds (no decode): proves the device still answers."""
        slot = await self._acquire()
        assert self._loop is not None
        try:
            slot.future = self._loop.create_future()
            slot.request.start_async()
            await slot.future
        finally:
            self._release(slot)
        self.last_success = time.monotonic()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _fail(fut: asyncio.Future[None], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
