"""Pure source logic against a tiny fake engine: scheduler, rate limit, adaptive FPS, protocol parsing."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Hashable

import pytest

from edge_agent.errors import EdgeAgentError, InferenceError, NotJpeg
from edge_agent.inference.contract import DetectParams, Dropped, JpegFrame, Outcome, Result, Timings
from edge_agent.sources.fps import AdaptiveFps, RateLimiter
from edge_agent.sources.replies import BadMessage
from edge_agent.sources.scheduler import Job, Scheduler
from edge_agent.sources.websocket.protocol import BadBase64, ConfigMsg, FrameMsg, PingMsg, parse_text


class FakeEngine:
    """Each frame blocks until released by the test; records the order frames reached 'inference'."""

    def __init__(self, capacity: int = 1) -> None:
        self.num_requests = capacity
        self.started: list[bytes] = []
        self.gates: dict[bytes, asyncio.Event] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(
        self, frame: JpegFrame, params: DetectParams, arrived: float, future: asyncio.Future[Result | Dropped]
    ) -> asyncio.Future[Result | Dropped]:
        self.started.append(frame.data)
        if frame.data == b"bug":
            raise ValueError("oops")
        task = asyncio.ensure_future(self._run(frame.data, future))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return future

    async def _run(self, data: bytes, future: asyncio.Future[Result | Dropped]) -> None:
        await self.gates.setdefault(data, asyncio.Event()).wait()
        if future.done():
            return
        if data == b"boom":
            future.set_exception(InferenceError("device lost"))
        else:
            future.set_result(Result([], (1, 1), Timings(total=1.0)))

    def release(self, frame: bytes) -> None:
        self.gates.setdefault(frame, asyncio.Event()).set()


def make_job(owner: Hashable, frame: bytes) -> Job:
    return Job(owner, JpegFrame(frame, 1, 1), DetectParams(), asyncio.get_running_loop().create_future())


async def outcome_of(job: Job) -> Outcome:
    try:
        return await asyncio.wait_for(job.outcome, 1)
    except EdgeAgentError as exc:
        return exc


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_scheduler_round_robin_between_owners() -> None:
    fake = FakeEngine()
    sched = Scheduler(lambda: fake)  # type: ignore[arg-type,return-value]
    first = make_job("a", b"a0")
    sched.submit(first, 1)
    await settle()
    assert fake.started == [b"a0"]
    # While a0 runs: owner a floods, b and c send one each.
    jobs = {name: make_job(name[0], name.encode()) for name in ("a1", "b1", "c1")}
    sched.submit(jobs["a1"], 4)
    sched.submit(make_job("a", b"a2"), 4)
    sched.submit(jobs["b1"], 4)
    sched.submit(jobs["c1"], 4)
    for frame in (b"a0", b"a1", b"b1", b"c1", b"a2"):
        fake.release(frame)
        await settle()
    # a was served first, so after a1 the ring goes to b and c before a's second waiting frame.
    assert fake.started == [b"a0", b"a1", b"b1", b"c1", b"a2"]
    assert all(isinstance(j.outcome.result(), Result) for j in jobs.values())


async def test_scheduler_latest_frame_wins() -> None:
    fake = FakeEngine()
    sched = Scheduler(lambda: fake)  # type: ignore[arg-type,return-value]
    running = make_job("a", b"f1")
    sched.submit(running, 1)
    waiting = [make_job("a", f"f{i}".encode()) for i in range(2, 6)]
    for job in waiting:
        sched.submit(job, 1)
    assert [j.outcome.done() for j in waiting] == [True, True, True, False]
    assert all(j.outcome.result() == Dropped("backpressure") for j in waiting[:3])
    assert sched.waiting == 1
    fake.release(b"f1")
    fake.release(b"f5")
    await asyncio.wait_for(waiting[3].outcome, 1)
    assert fake.started == [b"f1", b"f5"]


async def test_scheduler_queue_size_two_keeps_two() -> None:
    fake = FakeEngine()
    sched = Scheduler(lambda: fake)  # type: ignore[arg-type,return-value]
    jobs = [make_job("a", f"f{i}".encode()) for i in range(4)]
    for job in jobs:
        sched.submit(job, 2)
    assert jobs[1].outcome.result() == Dropped("backpressure")
    assert not jobs[2].outcome.done() and not jobs[3].outcome.done()
    await sched.async_drain(timeout=0.01)
    assert all(j.outcome.done() for j in jobs)


async def test_scheduler_capacity_and_errors() -> None:
    fake = FakeEngine(capacity=2)
    sched = Scheduler(lambda: fake)  # type: ignore[arg-type,return-value]
    jobs = [make_job(i, f) for i, f in enumerate((b"boom", b"bug", b"ok1", b"ok2", b"ok3"))]
    for job in jobs:
        sched.submit(job, 1)
    await settle()
    # An engine bug at submit is answered at once and holds no request.
    assert sched.running == 2 and fake.started == [b"boom", b"bug", b"ok1"]
    fake.num_requests = 3  # a reloaded engine with more requests is used at the next dispatch
    fake.release(b"boom")
    await settle()
    assert sched.running == 3 and fake.started[-2:] == [b"ok2", b"ok3"]
    for frame in (b"ok1", b"ok2", b"ok3"):
        fake.release(frame)
    outcomes: list[Outcome] = [await outcome_of(j) for j in jobs]
    assert isinstance(outcomes[0], InferenceError) and "device lost" in str(outcomes[0])
    assert isinstance(outcomes[1], InferenceError) and "ValueError" in str(outcomes[1])
    assert all(isinstance(o, Result) for o in outcomes[2:])
    assert sched.running == 0


async def test_scheduler_cancel_owner_and_drain() -> None:
    fake = FakeEngine()
    sched = Scheduler(lambda: fake)  # type: ignore[arg-type,return-value]
    running, waiting, other = make_job("a", b"r"), make_job("a", b"w"), make_job("b", b"o")
    for job in (running, waiting, other):
        sched.submit(job, 1)
    sched.cancel_owner("a")
    assert waiting.outcome.result() == Dropped("closed")
    assert sched.waiting == 1
    sched.cancel_owner("a")  # idempotent
    await sched.async_drain(timeout=0.05)  # r never finishes: cancelled after the timeout
    assert running.outcome.result() == Dropped("closed")
    assert other.outcome.result() == Dropped("closed")


def test_rate_limiter_allows_rate_plus_burst() -> None:
    limiter = RateLimiter(10.0, now=0.0)
    assert limiter.burst == 2.5 and RateLimiter(4.0, now=0.0).burst == 2.0
    # 100 frames over one second at 100 fps: about rate*1s + burst pass.
    allowed = sum(limiter.allow(i / 100) for i in range(100))
    assert 10 <= allowed <= 13
    # A sender at exactly the rate is never dropped, even with jitter.
    limiter = RateLimiter(10.0, now=0.0)
    stamps = [i * 0.1 + (0.02 if i % 2 else -0.02) for i in range(1, 50)]
    assert all(limiter.allow(t) for t in stamps)


def _run(ctrl: AdaptiveFps, latency_of: object, seconds: float) -> list[tuple[float, float]]:
    """Feed the controller frames at its own limit; latency from a model of the pipeline."""
    changes: list[tuple[float, float]] = []
    t = 0.0
    while t < seconds:
        change = ctrl.observe(latency_of(ctrl.limit), t)  # type: ignore[operator]
        if change is not None:
            changes.append((t, change.fps_limit))
        t += 1.0 / ctrl.limit
    return changes


def test_adaptive_fps_lowers_to_floor_when_slow_and_stays() -> None:
    ctrl = AdaptiveFps(target_ms=100, floor=5, ceiling=30, start=15)
    changes = _run(ctrl, lambda fps: 400.0, 20)
    assert ctrl.limit == 5
    assert [fps for _, fps in changes] == sorted((fps for _, fps in changes), reverse=True)
    assert changes[-1][0] < 5  # reached the floor within a few windows, then no more messages


def test_adaptive_fps_raises_to_ceiling_when_fast() -> None:
    ctrl = AdaptiveFps(target_ms=100, floor=5, ceiling=30, start=15)
    changes = _run(ctrl, lambda fps: 20.0, 30)
    assert ctrl.limit == 30
    assert all(b > a for (_, a), (_, b) in itertools.pairwise(changes))


def test_adaptive_fps_holds_inside_band() -> None:
    ctrl = AdaptiveFps(target_ms=100, floor=5, ceiling=30, start=15)
    assert _run(ctrl, lambda fps: 100.0, 30) == []
    assert _run(ctrl, lambda fps: 149.0, 30) == [] and _run(ctrl, lambda fps: 71.0, 30) == []


def test_adaptive_fps_settles_under_load_without_oscillation() -> None:
    # A pipeline that keeps up to 12 fps at 60 ms, then queues: latency grows with the overload.
    def latency(fps: float) -> float:
        return 60.0 if fps <= 12 else 60.0 + (fps - 12) * 40.0

    ctrl = AdaptiveFps(target_ms=100, floor=5, ceiling=30, start=30)
    changes = _run(ctrl, latency, 120)
    assert changes, "should have reacted to the overload"
    late = [c for c in changes if c[0] > 40]
    assert late == [], f"still changing after 40 s: {late}"
    assert latency(ctrl.limit) <= 150 and ctrl.limit >= 5


def test_adaptive_fps_client_limit_is_ceiling() -> None:
    ctrl = AdaptiveFps(target_ms=100, floor=5, ceiling=30, start=15)
    ctrl.set_bounds(5, 8, 8)
    _run(ctrl, lambda fps: 10.0, 20)
    assert ctrl.limit == 8
    ctrl.set_bounds(2, 2, 2)  # a client may ask for less than min_fps
    _run(ctrl, lambda fps: 900.0, 10)
    assert ctrl.limit == 2


@pytest.mark.parametrize(
    ("text", "error", "fragment"),
    [
        ("not json", BadMessage, "not valid JSON"),
        ("[1, 2]", BadMessage, "expected a JSON object"),
        ('{"frame_id": 1}', BadMessage, "missing 'type'"),
        ('{"type": "dance"}', BadMessage, "unknown message type 'dance'"),
        ('{"type": "frame", "image": 5}', BadMessage, "'image' must be a base64 JPEG string"),
        ('{"type": "frame", "image": "AAAA", "frame_id": "x"}', BadMessage, "'frame_id' must be an integer"),
        ('{"type": "frame", "image": "@@@", "frame_id": 3}', BadBase64, "not valid base64"),
        ('{"type": "config", "fps_limit": "fast"}', BadMessage, "'fps_limit' must be a number"),
        ('{"type": "config", "fps_limit": 1000}', BadMessage, "'fps_limit' must be in"),
        ('{"type": "config", "confidence": true}', BadMessage, "'confidence' must be a number"),
        ('{"type": "config", "classes": "person"}', BadMessage, "'classes' must be a list"),
        ('{"type": "config", "colour": 1}', BadMessage, "unknown config field(s): colour"),
    ],
)
def test_parse_text_errors(text: str, error: type[BadMessage], fragment: str) -> None:
    with pytest.raises(error, match=None) as info:
        parse_text(text, max_fps=30)
    assert fragment in str(info.value)
    assert type(info.value) is error


def test_parse_text_messages() -> None:
    frame = parse_text(
        '{"type":"frame","frame_id":7,"image":"data:image/jpeg;base64,/9j/","timestamp":1.5}', 30
    )
    assert frame == FrameMsg(b"\xff\xd8\xff", 7, 1.5)
    cfg = parse_text('{"type":"config","fps_limit":10,"classes":["person",0]}', 30)
    assert cfg == ConfigMsg(10.0, None, None, ["person", 0], False)
    cleared = parse_text('{"type":"config","classes":null}', 30)
    assert isinstance(cleared, ConfigMsg) and cleared.clear_classes
    assert parse_text('{"type":"ping"}', 30) == PingMsg(None)
    assert BadBase64("x", 3).frame_id == 3 and NotJpeg.code == "not_jpeg"
    assert time.monotonic() > 0
