"""The inference engine: `await engine.detect(jpeg, params) -> Result` over N async OpenVINO requests."""

from __future__ import annotations

import asyncio
import contextlib
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
from .errors import EdgeAgentError, EngineNotRunning, InferenceError
from .frames import FrameBuffers, check_jpeg
from .models.loader import LoadedModel, load_model
from .pool import FairPool
from .postprocess import to_detections
from .stats import LatencyWindow
from .types import Detection, DetectParams, DeviceChoice, ModelInfo, Result, Timings

log = logging.getLogger(__name__)
INITIAL_DECODE_PIXELS = 1280 * 720


def with_preprocessing(loaded: LoadedModel) -> ov.Model:
    """Compile u8 NHWC RGBX → the model's own layout, channels, type and scale into the graph (PrePostProcessor).

    RGBX rather than RGB: the letterbox moves 4-byte pixels, and benchmark_app on both IRs shows the
    4-channel input costs the graph nothing (23.1 vs 23.2-23.5 ms median).
    """
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


@dataclass
class _Job:
    """One frame (or a probe, jpeg=None) on its way through a slot, with its stage times."""

    future: asyncio.Future[list[Detection] | None]
    jpeg: bytes | None
    width: int
    height: int
    params: DetectParams
    scale: float = 1.0
    dx: int = 0
    dy: int = 0
    decode_ms: float = 0.0
    pre_ms: float = 0.0
    t_start: float = 0.0
    t_done: float = 0.0
    t_post: float = 0.0


@dataclass
class _Slot:
    """One infer request with its preallocated input tensor and decode buffer."""

    request: ov.InferRequest
    image: np.ndarray  # [1, H, W, 4] u8 RGBX, shared with the request's input tensor
    buffers: FrameBuffers
    job: _Job | None = None


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
        self._num_outputs = 0
        self._stalled = False
        self._stopping = False
        self._idle = asyncio.Event()  # set whenever no request is in flight
        self._idle.set()
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
        self._num_outputs = len(compiled.outputs)
        self._make_slots(compiled)
        self.last_success = time.monotonic()
        self._status(f"model {loaded.info.name} ready on {','.join(self.device.executing)}")

    def _make_slots(self, compiled: ov.CompiledModel) -> None:
        optimal = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        # One request more than the device's optimum: the next frame is decoded while every stream runs
        # (measured on 2 cores, 4 callers: THROUGHPUT 36.9 -> 38.4 FPS, LATENCY 37.0 -> 38.2 FPS).
        wanted = self._cfg.engine.num_requests or optimal + 1
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
        # Runs on an OpenVINO thread: post-process here (off the loop, no extra thread hop), then hand the
        # result to the loop with call_soon_threadsafe; asyncio objects are only touched on the loop.
        job, loop = slot.job, self._loop
        if job is None or loop is None or self._stalled:
            return
        job.t_done = time.perf_counter()
        value: list[Detection] | None = None
        error: BaseException | None = None
        try:
            if job.jpeg is not None:
                value = self._finish(slot, job)  # reading the outputs raises if the request ended in error
            else:
                slot.request.get_output_tensor(0)
        except RuntimeError as exc:
            error = InferenceError(f"inference failed: {str(exc).splitlines()[0] if str(exc) else exc!r}")
        except Exception as exc:  # a decoder bug must reach the caller, not vanish in a C++ thread
            log.exception("post-processing failed")
            error = InferenceError(f"post-processing failed: {type(exc).__name__}: {exc}")
        job.t_post = time.perf_counter()
        loop.call_soon_threadsafe(self._complete, slot, job, value, error)

    def _complete(self, slot: _Slot, job: _Job, value: list[Detection] | None, error: BaseException | None) -> None:
        if job.future.cancelled():  # the caller went away; the request is idle now, so recycle it
            self._release(slot)
        elif error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(value)

    async def async_stop(self, timeout: float = 10.0) -> None:
        """Refuse new frames, wait (bounded) for in-flight requests, then release the model and threads."""
        self._stopping = True
        self._free.close(EngineNotRunning("engine is stopping"))
        if not self._stalled:  # a stalled request never finishes: do not wait for it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        if self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
        for slot in self._slots:
            # A completion callback may still be unwinding on an OpenVINO thread after it handed us the
            # result; wait() returns once it is done. Then break the request -> callback -> engine cycle,
            # which Python's GC cannot see through C++ (left alive, it aborts the interpreter at exit).
            if not self._stalled:
                slot.request.wait()
                slot.request.set_callback(_ignore, None)
        self._executor, self._slots, self._compiled = None, [], None

    def inject_stall(self) -> None:
        """Fault injection for tests: every later inference hangs forever (its result is never delivered)."""
        log.warning("FAULT INJECTION: inference stalled on request")
        self._stalled = True

    async def _acquire(self) -> _Slot:
        if not self.running or self._stopping:
            raise EngineNotRunning("engine is not running")
        slot = await self._free.get()
        self.in_flight += 1
        self._idle.clear()
        return slot

    def _release(self, slot: _Slot) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self._idle.set()
        slot.job = None
        if self.running and not self._stopping:
            self._free.put(slot)

    def _prepare(self, slot: _Slot, job: _Job) -> None:
        """Worker thread: decode and letterbox into the slot's tensor, then start inference."""
        assert self._loop is not None and job.jpeg is not None
        try:
            t0 = time.perf_counter()
            in_h, in_w = slot.image.shape[1:3]
            decoded = slot.buffers.decode_into(job.jpeg, job.width, job.height, in_w, in_h)
            t1 = time.perf_counter()
            scale, job.dx, job.dy = slot.buffers.letterbox_into(decoded, slot.image)
            job.scale = scale * decoded.shape[1] / job.width
            job.t_start = time.perf_counter()
            job.decode_ms, job.pre_ms = (t1 - t0) * 1e3, (job.t_start - t1) * 1e3
            slot.request.start_async()
        except EdgeAgentError as exc:  # a bad frame
            self._loop.call_soon_threadsafe(self._complete, slot, job, None, exc)
        except RuntimeError as exc:  # OpenVINO refusing to start
            error = InferenceError(f"inference failed to start: {exc}")
            self._loop.call_soon_threadsafe(self._complete, slot, job, None, error)
        except Exception as exc:  # any bug must reach the caller, or it would wait forever
            log.exception("frame preparation failed")
            error = InferenceError(f"frame preparation failed: {type(exc).__name__}: {exc}")
            self._loop.call_soon_threadsafe(self._complete, slot, job, None, error)

    def _finish(self, slot: _Slot, job: _Job) -> list[Detection]:
        assert self._loaded is not None
        outputs = [slot.request.get_output_tensor(i).data for i in range(self._num_outputs)]
        det, params = self._cfg.detection, job.params
        return to_detections(
            self._loaded.decoder(outputs, params.confidence if params.confidence is not None else det.confidence),
            self._loaded.info.labels, job.scale, job.dx, job.dy, (job.width, job.height),
            params.iou if params.iou is not None else det.iou, det.max_detections, params.classes,
        )

    async def _run(self, slot: _Slot, job: _Job) -> list[Detection] | None:
        """Await the job's result; the slot goes back to the pool once its request is idle."""
        try:
            result = await job.future
        except asyncio.CancelledError:
            if job.future.done() and not job.future.cancelled():
                self._release(slot)  # finished just as we were cancelled
            raise  # otherwise _complete releases the slot when the request is idle
        except BaseException:
            self._release(slot)
            raise
        self._release(slot)
        return result

    async def detect(self, jpeg: bytes, params: DetectParams | None = None) -> Result:
        """Detect objects in one JPEG frame; raises a FrameError for bad input, InferenceError on failure."""
        t0 = time.perf_counter()
        eng = self._cfg.engine
        width, height = check_jpeg(jpeg, eng.max_frame_bytes, eng.max_frame_pixels)
        slot = await self._acquire()
        assert self._loop is not None and self._executor is not None
        t1 = time.perf_counter()
        job = _Job(self._loop.create_future(), jpeg, width, height, params or DetectParams())
        slot.job = job
        self._executor.submit(self._prepare, slot, job)
        detections = await self._run(slot, job)
        assert detections is not None
        t4 = time.perf_counter()
        self.last_success = time.monotonic()
        timings = Timings(queue=(t1 - t0) * 1e3, decode=job.decode_ms, preprocess=job.pre_ms,
                          inference=(job.t_done - job.t_start) * 1e3, postprocess=(job.t_post - job.t_done) * 1e3,
                          total=(t4 - t0) * 1e3)
        self.latency.add(timings.total)
        return Result(detections=detections, image_size=(width, height), timings=timings)

    async def async_probe(self) -> None:
        """One inference on whatever a request holds (no decode): proves the device still answers."""
        slot = await self._acquire()
        assert self._loop is not None
        job = _Job(self._loop.create_future(), None, 0, 0, DetectParams())
        slot.job = job
        slot.request.start_async()
        await self._run(slot, job)
        self.last_success = time.monotonic()


def _ignore(_userdata: object) -> None:
    """Callback left on requests being released."""
