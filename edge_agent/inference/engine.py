"""The inference engine: `engine.submit(frame, params) -> Future[Result]` over N async OpenVINO requests."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openvino as ov

from ..config import Config
from ..errors import EdgeAgentError, EngineNotRunning, InferenceError
from .compile import compile_properties, compute_precision, enable_cache, resolve_hint, with_preprocessing
from .contract import Detection, DetectParams, DeviceChoice, Frame, JpegFrame, ModelInfo, Result, Timings
from .device import async_select
from .frames import check_jpeg
from .models.loader import LoadedModel, load_model
from .postprocess import to_detections
from .requests import Job, Slot

log = logging.getLogger(__name__)


class Engine:
    """Owns the compiled model, its infer requests and their buffers; frames wait for a request in order."""

    def __init__(self, config: Config, core: ov.Core | None = None) -> None:
        self._cfg = config
        self._core = core
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._free: list[Slot] = []
        self._pending: deque[Job] = deque()  # submitted while every request was busy, first come first served
        self._slots: list[Slot] = []
        self._loaded: LoadedModel | None = None
        self._num_outputs = 0
        self._stalled = False
        self._stopping = False
        self._idle = asyncio.Event()  # set whenever no request is in flight
        self._idle.set()
        self.device: DeviceChoice | None = None
        self.in_flight = 0
        self.streams = 1  # inferences the device runs at once (OPTIMAL_NUMBER_OF_INFER_REQUESTS)
        self.last_success: float | None = None
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
        return bool(self._slots) and self._executor is not None and not self._stopping

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
        eng, m = self._cfg.engine, self._cfg.model
        enable_cache(core, eng)
        self._status(f"loading model {m.path}")
        loaded = await self._loop.run_in_executor(
            self._executor,
            lambda: load_model(core, m.path, m.family, m.labels, m.name, m.input_size, m.precision),
        )
        model = await self._loop.run_in_executor(self._executor, with_preprocessing, loaded)
        compiled, self.device = await async_select(
            core,
            eng.device,
            lambda d: core.compile_model(model, d, compile_properties(eng, self.hint, d)),
            self._executor,
            eng.compile_timeout,
            on_attempt=lambda d: self._status(f"compiling model on {d}"),
        )
        self._loaded = loaded
        self._num_outputs = len(compiled.outputs)
        self._make_slots(compiled)
        self.last_success = time.monotonic()
        where = f"{','.join(self.device.executing)} {compute_precision(compiled)}".strip()
        self._status(f"model {loaded.info.name} ({loaded.info.precision}) ready on {where}")

    def _make_slots(self, compiled: ov.CompiledModel) -> None:
        optimal = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.streams = max(1, optimal)
        # One request more than the device's optimum: the next frame is decoded while every stream runs
        # (measured on 2 cores, 4 callers: THROUGHPUT 36.9 -> 38.4 FPS, LATENCY 37.0 -> 38.2 FPS).
        wanted = self._cfg.engine.num_requests or optimal + 1
        count = max(1, wanted) if self._cfg.engine.async_inference else 1
        for _ in range(count):
            slot = Slot.create(compiled)
            slot.request.set_callback(self._on_done, slot)
            self._slots.append(slot)
            self._free.append(slot)

    def submit(
        self,
        frame: Frame | None,
        params: DetectParams,
        arrived: float | None = None,
        future: asyncio.Future[Any] | None = None,
    ) -> asyncio.Future[Any]:
        """Queue a checked frame (None: a probe) for inference; the future resolves once, with timings built.

        `arrived` (perf_counter) is when the frame reached us, so queueing before the engine is counted;
        `future` lets the caller's own future be the one resolved. A future resolved elsewhere meanwhile
        (cancelled, dropped) gives the frame up; its request is recycled once idle.
        """
        if not self.running or self._loop is None:
            raise EngineNotRunning("engine is not running")
        job = Job(future if future is not None else self._loop.create_future(), frame, params)
        if arrived is not None:
            job.arrived = arrived
        if self._free:
            self._start(self._free.pop(), job)
        else:
            self._pending.append(job)
        return job.future

    async def detect(self, jpeg: bytes, params: DetectParams | None = None) -> Result:
        """Detect objects in one JPEG; raises a FrameError for bad input, InferenceError on failure."""
        arrived = time.perf_counter()
        eng = self._cfg.engine
        width, height = check_jpeg(jpeg, eng.max_frame_bytes, eng.max_frame_pixels)
        result: Result = await self.submit(JpegFrame(jpeg, width, height), params or DetectParams(), arrived)
        return result

    async def async_probe(self) -> None:
        """One inference on whatever a request holds (no decode): proves the device still answers."""
        await self.submit(None, DetectParams())

    def _start(self, slot: Slot, job: Job) -> None:
        assert self._executor is not None
        self.in_flight += 1
        self._idle.clear()
        slot.job = job
        if job.frame is None:
            slot.request.start_async()
        else:
            self._executor.submit(self._prepare, slot, job)

    def _prepare(self, slot: Slot, job: Job) -> None:
        """Worker thread: decode (or copy pixels) and letterbox into the request's tensor, then start it.

        Any failure reaches the caller through the loop; none vanishes in the thread.
        """
        assert self._loop is not None and job.frame is not None
        frame, error = job.frame, None
        try:
            job.t_decode = time.perf_counter()
            in_h, in_w = slot.image.shape[1:3]
            if isinstance(frame, JpegFrame):
                decoded = slot.buffers.decode_into(frame.data, frame.width, frame.height, in_w, in_h)
            else:
                decoded = slot.buffers.load_pixels(frame.pixels)
            job.t_pre = time.perf_counter()
            scale, job.dx, job.dy = slot.buffers.letterbox_into(decoded, slot.image)
            job.scale = scale * decoded.shape[1] / frame.width
            job.t_start = time.perf_counter()
            slot.request.start_async()
            return
        except EdgeAgentError as exc:  # a bad frame
            error = exc
        except RuntimeError as exc:  # OpenVINO refusing to start
            error = InferenceError(f"inference failed to start: {exc}")
        except Exception as exc:
            log.exception("frame preparation failed")
            error = InferenceError(f"frame preparation failed: {type(exc).__name__}: {exc}")
        self._loop.call_soon_threadsafe(self._complete, slot, job, None, error)

    def _on_done(self, slot: Slot) -> None:
        # Runs on an OpenVINO thread: post-process here (off the loop, no extra thread hop), then hand the
        # result to the loop with call_soon_threadsafe; asyncio objects are only touched on the loop.
        job, loop, loaded = slot.job, self._loop, self._loaded
        if job is None or loop is None or loaded is None or self._stalled:
            return
        job.t_done = time.perf_counter()
        value: list[Detection] | None = None
        error: EdgeAgentError | None = None
        try:
            # Reading the outputs raises if the request ended in error.
            outputs = [slot.request.get_output_tensor(i).data for i in range(self._num_outputs)]
            frame, det, params = job.frame, self._cfg.detection, job.params
            value = (
                []
                if frame is None
                else to_detections(
                    loaded.decoder(
                        outputs, det.confidence if params.confidence is None else params.confidence
                    ),
                    loaded.info.labels,
                    job.scale,
                    job.dx,
                    job.dy,
                    (frame.width, frame.height),
                    None if loaded.suppressed else det.iou if params.iou is None else params.iou,
                    det.max_detections,
                    params.classes,
                )
            )
        except RuntimeError as exc:
            error = InferenceError(f"inference failed: {str(exc).splitlines()[0] if str(exc) else exc!r}")
        except Exception as exc:  # a decoder bug must reach the caller, not vanish in a C++ thread
            log.exception("post-processing failed")
            error = InferenceError(f"post-processing failed: {type(exc).__name__}: {exc}")
        job.t_post = time.perf_counter()
        loop.call_soon_threadsafe(self._complete, slot, job, value, error)

    def _complete(
        self, slot: Slot, job: Job, value: list[Detection] | None, error: EdgeAgentError | None
    ) -> None:
        """On the loop: release the request, then resolve the caller's future with the finished timings."""
        self._release(slot)
        if job.future.done():  # the caller gave up on this frame
            return
        if error is not None:
            job.future.set_exception(error)
            return
        assert value is not None
        self.last_success = time.monotonic()
        size = (0, 0) if job.frame is None else (job.frame.width, job.frame.height)
        job.future.set_result(Result(value, size, _timings(job, time.perf_counter())))

    def _release(self, slot: Slot) -> None:
        slot.job = None
        self.in_flight -= 1
        if not self.running:
            if not self.in_flight:
                self._idle.set()
            return
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                self._start(slot, job)
                return
        self._free.append(slot)
        if not self.in_flight:
            self._idle.set()

    async def async_stop(self, timeout: float = 10.0) -> None:
        """Refuse new frames, fail waiting ones, wait (bounded) for in-flight requests, then release everything."""
        self._stopping = True
        self._free.clear()
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(EngineNotRunning("engine is stopping"))
        if not self._stalled:  # a stalled request never finishes: do not wait for it
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        for slot in self._slots:  # whatever is still in flight now will not be answered
            if slot.job is not None and not slot.job.future.done():
                slot.job.future.set_exception(EngineNotRunning("engine stopped before this frame finished"))
        if self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)
        for slot in self._slots:
            # A completion callback may still be unwinding on an OpenVINO thread after it handed us the
            # result; wait() returns once it is done. Then break the request -> callback -> engine cycle,
            # which Python's GC cannot see through C++ (left alive, it aborts the interpreter at exit).
            # A request still busy after the timeout is hung: wait() would block the loop for good.
            if not self._stalled and slot.job is None:
                slot.request.wait()
                slot.request.set_callback(_ignore, None)
        self._executor, self._slots = None, []

    def inject_stall(self) -> None:
        """Fault injection for tests: every later inference hangs forever (its result is never delivered)."""
        log.warning("FAULT INJECTION: inference stalled on request")
        self._stalled = True


def _timings(job: Job, now: float) -> Timings:
    if job.frame is None:
        return Timings(inference=(job.t_done - job.t_start) * 1e3, total=(now - job.arrived) * 1e3)
    return Timings(
        queue=(job.t_decode - job.arrived) * 1e3,
        decode=(job.t_pre - job.t_decode) * 1e3,
        preprocess=(job.t_start - job.t_pre) * 1e3,
        inference=(job.t_done - job.t_start) * 1e3,
        postprocess=(job.t_post - job.t_done) * 1e3,
        total=(now - job.arrived) * 1e3,
    )


def _ignore(_userdata: object) -> None:
    """Callback left on requests being released."""
