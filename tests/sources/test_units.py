"""Pure source logic against a tiny fake engine: scheduler, rate limit, adaptive FPS, protocol parsing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Hashable

import pytest

from edge_agent.errors import EdgeAgentError, InferenceError, NotJpeg
from edge_agent.inference.contract import DetectParams, Dropped, JpegFrame, Outcome, Result, Timings
from edge_agent.sources.capacity import Capacity, FairShare, water_fill
from edge_agent.sources.fps import AdaptiveFps, RateLimiter
from edge_agent.sources.replies import BadMessage
from edge_agent.sources.scheduler import Job, Scheduler
from edge_agent.sources.websocket.protocol import BadBase64, ConfigMsg, FrameMsg, PingMsg, parse_text


class FakeEngine:
    """Each frame blocks until released by the test; records the order frames reached 'inference'."""

    def __init__(self, capacity: int = 1) -> None:
        self.num_requests = capacity
        self.streams = capacity
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


def _run(
    ctrl: AdaptiveFps, share: float | None, seconds: float, got: float | None = None, t0: float = 0.0
) -> list[tuple[float, float]]:
    """Feed the controller frames at its own limit; beyond `got` fps the excess is dropped for backpressure."""
    changes: list[tuple[float, float]] = []
    t, credit = t0, 0.0
    while t < t0 + seconds:
        credit += (got if got is not None else ctrl.limit) / ctrl.limit
        processed = credit >= 1.0
        credit -= processed
        change = ctrl.observe(processed, t, lambda: share)
        if change is not None:
            changes.append((t, change.fps_limit))
        t += 1.0 / ctrl.limit
    return changes


def test_adaptive_fps_goes_to_the_fair_share_in_one_step_and_stays() -> None:
    ctrl = AdaptiveFps(floor=1, ceiling=30, start=15)
    changes = _run(ctrl, 6.3, 30)
    assert changes == [(changes[0][0], 6.3)] and changes[0][0] < 1.2
    ctrl = AdaptiveFps(floor=1, ceiling=30, start=15)
    assert [fps for _, fps in _run(ctrl, 80.0, 10)] == [30]  # never above the ceiling


def test_adaptive_fps_holds_without_an_estimate_or_inside_the_deadband() -> None:
    assert _run(AdaptiveFps(floor=1, ceiling=30, start=15), None, 20) == []
    assert _run(AdaptiveFps(floor=1, ceiling=30, start=15), 16.4, 20) == []
    assert _run(AdaptiveFps(floor=1, ceiling=30, start=15), 13.6, 20) == []


def test_adaptive_fps_counts_backpressure_drops() -> None:
    # The share says 20, but only 8 fps get processed: the session is told what it really gets.
    ctrl = AdaptiveFps(floor=1, ceiling=30, start=20)
    changes = _run(ctrl, 20.0, 10, got=8.0)
    assert 7.0 <= changes[0][1] <= 9.0 and 7.0 <= ctrl.limit <= 10.0
    assert len(changes) <= 3, changes  # told once; at most one probe upwards, answered by drops
    # Once the pipeline keeps up again, the limit climbs back to the share.
    _run(ctrl, 20.0, 40, t0=10.0)
    assert ctrl.limit >= 18.0  # within the deadband of the share


def test_adaptive_fps_client_limit_is_ceiling() -> None:
    ctrl = AdaptiveFps(floor=5, ceiling=30, start=15)
    ctrl.set_bounds(5, 8, 8)
    _run(ctrl, 20.0, 20)
    assert ctrl.limit == 8
    ctrl.set_bounds(2, 2, 2)  # a client may ask for less than min_fps
    _run(ctrl, 1.0, 10)
    assert ctrl.limit == 2
    ctrl = AdaptiveFps(floor=5, ceiling=30, start=15)
    _run(ctrl, 3.0, 10)
    assert ctrl.limit == 5  # never below min_fps


def test_water_fill_gives_unused_share_to_the_others() -> None:
    assert water_fill(18.0, []) == 18.0
    assert water_fill(18.0, [9.9]) == 9.0
    assert water_fill(18.0, [5.5, 20.0]) == 6.25  # 5.5 kept by a slow camera, the rest split
    assert water_fill(18.0, [1.0, 2.0]) == 15.0


class _Known(Capacity):
    def __init__(self, fps: float) -> None:
        super().__init__()
        self.known = fps

    @property
    def fps(self) -> float | None:
        return self.known


def test_capacity_counts_busy_time_per_stream() -> None:
    # A two-stream device at 50 ms per frame (40 fps) with one frame at a time: half busy, 40 fps.
    cap, t = Capacity(), 0.0
    for _ in range(60):
        cap.started(t, 2)
        t += 0.05
        cap.finished(t)
        t += 0.01  # the client's round trip
    assert cap.fps is not None and abs(cap.fps - 40.0) < 1.0
    # Saturated with three frames in flight on the same device: still 40 fps, not 60.
    cap, t = Capacity(), 0.0
    for _ in range(3):
        cap.started(t, 2)
    for _ in range(120):
        t += 0.025
        cap.finished(t)
        cap.started(t, 2)
    assert cap.fps is not None and abs(cap.fps - 40.0) < 1.0
    # Frames that fail fast (corrupt data) keep the device busy but are not capacity.
    for _ in range(200):
        cap.started(t, 2)
        t += 0.002
        cap.finished(t, processed=False)
    assert cap.fps is not None and cap.fps < 41.0


def test_shares_converge_when_sessions_come_and_go() -> None:
    """Well-behaved sessions that follow their limits settle on equal shares, re-settle, and stop changing."""
    shares = FairShare(_Known(20.0))
    ctrls = {name: AdaptiveFps(floor=1, ceiling=30, start=15) for name in ("a", "b", "c")}
    history: dict[str, list[tuple[float, float]]] = {name: [] for name in ctrls}
    next_frame = dict.fromkeys(ctrls, 0.0)

    def run(active: tuple[str, ...], until: float) -> None:
        t = min(next_frame[n] for n in active)
        while t < until:
            name = min(active, key=lambda n: next_frame[n])
            t = next_frame[name]
            shares.offered(name, t)
            change = ctrls[name].observe(True, t, lambda n=name, now=t: shares.share(n, now))  # type: ignore[misc]
            if change is not None:
                history[name].append((t, change.fps_limit))
            next_frame[name] = t + 1.0 / ctrls[name].limit

    run(("a", "b"), 10.0)
    assert abs(ctrls["a"].limit - 9.0) < 0.6 and abs(ctrls["b"].limit - 9.0) < 0.6
    next_frame["c"] = 10.0
    run(("a", "b", "c"), 25.0)
    assert all(abs(c.limit - 6.0) < 0.7 for c in ctrls.values()), {n: c.limit for n, c in ctrls.items()}
    assert all(t < 16.0 for h in history.values() for t, _ in h if t > 10.0), history
    shares.forget("c")
    run(("a", "b"), 40.0)
    assert abs(ctrls["a"].limit - 9.0) < 0.6 and abs(ctrls["b"].limit - 9.0) < 0.6
    assert all(t < 31.0 for h in history.values() for t, _ in h if t > 25.0), history
    assert sum(len(h) for h in history.values()) <= 12, history


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


def test_fair_share_forgets_owners_it_no_longer_sees() -> None:
    shares = FairShare(_Known(20.0))
    for i in range(3000):  # /v1/detect: one owner per request
        shares.offered(object(), i * 0.001)
    assert len(shares._offers) <= 1024
    shares.offered("cam", 10.0)
    assert shares.share("cam", 10.0) == 18.0 and list(shares._offers) == ["cam"]


def test_fair_share_leaves_what_a_capped_session_cannot_use() -> None:
    shares = FairShare(_Known(40.0))
    for i in range(40):  # a client that asked for 10 fps and sends them
        shares.offered("capped", i * 0.1)
    shares.share("capped", 4.0, 10.0, 10.0)
    shares.offered("cam", 4.0)
    assert shares.share("cam", 4.0, 15.0, 30.0) == 26.0  # 36 budget - 10


@pytest.mark.parametrize("requests", [2, 3])
async def test_overloaded_frame_waits_behind_one_frame_per_other_owner(requests: int) -> None:
    """Three flooding owners, a FIFO device: latest wins and round-robin keep a processed frame's wait to
    the frames already in the requests plus one completion, and every owner gets the same share."""
    fake = FakeEngine(requests)
    sched = Scheduler(lambda: fake)  # type: ignore[arg-type,return-value]
    arrived: dict[bytes, int] = {}
    done: list[bytes] = []
    for tick in range(120):
        for owner in ((0, 1, 2), (2, 0, 1), (1, 2, 0))[tick % 3]:  # every owner sends again, in turns
            frame = f"{owner}:{tick}".encode()
            arrived[frame] = len(done)
            sched.submit(make_job(owner, frame), 1)
        await settle()
        oldest = next(f for f in fake.started if f not in done)
        done.append(oldest)
        fake.release(oldest)
        await settle()
    waits = [i + 1 - arrived[f] for i, f in enumerate(done)]
    assert max(waits) <= requests + 1, waits
    served = [sum(f.startswith(f"{o}:".encode()) for f in done) for o in range(3)]
    assert max(served) - min(served) <= 1, served
