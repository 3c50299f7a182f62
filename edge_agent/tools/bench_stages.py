"""Server CPU per frame outside inference, stage by stage, on the real code paths (`edge-agent bench --stages`).

Each photo goes through one real infer request's buffers and the real Source reply path in this process,
quietly (no other load), and every stage is timed with the thread's own CPU clock: what the box spends on
a frame besides the network's own inference.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import load_config
from ..events import EventHub
from ..inference.contract import Detection, JpegFrame, Result
from ..inference.engine import Engine
from ..inference.frames import check_jpeg
from ..inference.postprocess import to_detections
from ..inference.requests import Job
from ..observability import Observability
from ..sources.base import Services, Source, _Slot
from ..sources.scheduler import Scheduler
from .bench_photos import Photo

STAGES = ("header", "decode", "letterbox", "postprocess", "reply", "bookkeeping")


def _cpu_ms(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    t0 = time.thread_time_ns()
    value = fn(*args)
    return (time.thread_time_ns() - t0) / 1e6, value


async def _photo_stages(engine: Engine, source: Source, photo: Photo, reps: int) -> dict[str, float]:
    slot = engine._slots[0]  # a bench may borrow one idle request of its own engine
    eng = engine._cfg.engine
    samples: dict[str, list[float]] = {s: [] for s in (*STAGES, "inference wall")}
    in_h, in_w = slot.image.shape[1:3]
    loop = asyncio.get_running_loop()
    for i in range(reps):
        ms, (w, h) = _cpu_ms(check_jpeg, photo.data, eng.max_frame_bytes, eng.max_frame_pixels)
        samples["header"].append(ms)
        frame = JpegFrame(photo.data, w, h)
        job = Job(loop.create_future(), frame, source._engine_params)
        ms, image = _cpu_ms(slot.buffers.decode_into, frame.data, w, h, in_w, in_h)
        samples["decode"].append(ms)
        ms, (scale, job.dx, job.dy) = _cpu_ms(slot.buffers.letterbox_into, image, slot.image)
        samples["letterbox"].append(ms)
        job.scale = scale * image.shape[1] / w
        t0 = time.perf_counter()
        slot.request.infer()
        samples["inference wall"].append((time.perf_counter() - t0) * 1e3)
        ms, detections = _cpu_ms(_postprocess, engine, slot, job)
        samples["postprocess"].append(ms)
        result = Result(detections, (w, h), _timings())
        ms, (_, events) = _cpu_ms(source._reply, _Slot(i + 1, None, job.future, frame), result)
        samples["reply"].append(ms)
        ms, _ = _cpu_ms(_bookkeeping, source, result, events)
        samples["bookkeeping"].append(ms)
        job.future.cancel()
    return {k: statistics.median(v) for k, v in samples.items()}


def _postprocess(engine: Engine, slot: Any, job: Job) -> list[Detection]:
    """What the engine's completion callback does after inference (see Engine._on_done)."""
    loaded, det = engine._loaded, engine._cfg.detection
    assert loaded is not None and job.frame is not None
    outputs = [slot.request.get_output_tensor(i).data for i in range(engine._num_outputs)]
    return to_detections(
        loaded.decoder(outputs, det.confidence),
        loaded.info.labels,
        job.scale,
        job.dx,
        job.dy,
        (job.frame.width, job.frame.height),
        det.iou,
        det.max_detections,
        None,
    )


def _timings() -> Any:
    from ..inference.contract import Timings

    return Timings(queue=0.1, decode=2.0, preprocess=0.5, inference=40.0, postprocess=0.5, total=45.0)


def _bookkeeping(source: Source, result: Result, events: list[Any]) -> None:
    source.services.obs.record(source.stats, result)
    change = source._adapt(result)
    source._publish(events, change)


async def measure(config: str | None, photos: list[Photo], reps: int = 30) -> dict[str, dict[str, float]]:
    """Median CPU ms of each stage per photo (and the inference's wall time, for scale)."""
    loaded = load_config(
        Path(config) if config else None, overrides={("engine", "performance_hint"): "LATENCY"}
    )
    engine = Engine(loaded.config)
    await engine.async_start()
    try:
        cfg = loaded.config
        hub = EventHub(cfg.streaming.event_buffer, cfg.streaming.subscriber_queue)
        services = Services(Scheduler(lambda: engine), hub, Observability.create(cfg.streaming.max_sessions))
        source = Source("bench", "bench", cfg, engine.model.labels, services)
        out = {}
        for photo in photos:
            await _photo_stages(engine, source, photo, 3)  # warm: buffers grown, index cached
            out[f"{photo.name} {photo.width}x{photo.height}"] = await _photo_stages(
                engine, source, photo, reps
            )
        return out
    finally:
        await engine.async_stop()


def report(figures: dict[str, dict[str, float]]) -> None:
    """One row per photo: CPU ms per stage, their sum, and the inference for scale."""
    print(f"{'server CPU per frame, ms':30}" + "".join(f"{s:>12}" for s in (*STAGES, "sum", "inference")))
    for name, st in figures.items():
        total = sum(st[s] for s in STAGES)
        cells = "".join(f"{st[s]:12.3f}" for s in STAGES)
        print(f"{name:30}{cells}{total:12.3f}{st['inference wall']:12.1f}")
