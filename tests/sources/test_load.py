"""Overload, fairness and adaptive FPS on the real engine, with speeds measured in the test."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from edge_agent.inference.engine import Engine
from edge_agent.runtime import AGENT
from tests.support.streams import Serve, SseReader, next_json, ov_cache, serve

__all__ = ["ov_cache", "serve"]
# No rate limit and no adaptation: these tests are about backpressure and fairness.
UNLIMITED = {
    "streaming__max_fps": 240.0,
    "streaming__default_fps": 240.0,
    "streaming__adaptive_fps": False,
}


async def engine_speed(engine: Engine, jpeg: bytes, frames: int = 24) -> tuple[float, float]:
    """(throughput fps with all infer requests busy, service time s of one frame at that load)."""
    await asyncio.gather(*(engine.detect(jpeg) for _ in range(engine.num_requests)))
    t0 = time.perf_counter()
    await asyncio.gather(*(engine.detect(jpeg) for _ in range(frames)))
    capacity = frames / (time.perf_counter() - t0)
    return capacity, engine.num_requests / capacity


@dataclass
class Tally:
    """What one client sent and got back."""

    sent: int = 0
    replies: list[dict[str, Any]] = field(default_factory=list)

    def kinds(self, kind: str, reason: str | None = None) -> list[dict[str, Any]]:
        return [
            r for r in self.replies if r["type"] == kind and (reason is None or r.get("reason") == reason)
        ]


async def paced_sender(
    ws: aiohttp.ClientWebSocketResponse, jpeg: bytes, fps: float, seconds: float, t: Tally
) -> None:
    """Send frames at a fixed rate (open loop), like a camera."""
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        await ws.send_bytes(jpeg)
        t.sent += 1
        await asyncio.sleep(max(0.0, start + t.sent / fps - time.perf_counter()))


async def collect(ws: aiohttp.ClientWebSocketResponse, t: Tally, done: asyncio.Event) -> None:
    """Read replies until every sent frame is answered; `finish` wakes it with a pong at the end."""
    while not (done.is_set() and len(t.replies) == t.sent):
        msg = await next_json(ws)
        if msg["type"] != "pong":
            t.replies.append(msg)


async def finish(done: asyncio.Event, sockets: list[aiohttp.ClientWebSocketResponse]) -> None:
    """Senders are done: tell the collectors, and wake each with a ping's pong."""
    done.set()
    for ws in sockets:
        await ws.send_json({"type": "ping"})


async def test_overload_every_frame_answered_once_and_fairly(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(**UNLIMITED)
    jpeg = photos["coffee"]
    capacity, service = await engine_speed(client.app[AGENT].engine, jpeg)
    seconds = 4.0
    tallies = [Tally() for _ in range(3)]
    sockets = [await client.ws_connect(f"/stream/detection?client_id=c{i}") for i in range(3)]
    for ws in sockets:
        await next_json(ws)
    finished = asyncio.Event()
    readers = [asyncio.create_task(collect(ws, t, finished)) for ws, t in zip(sockets, tallies, strict=False)]
    # Three cameras, each 1.5x as fast as the whole engine: 4.5x what it served when measured (a margin
    # for noisy boxes, so the overload is at least 3x).
    await asyncio.gather(
        *(paced_sender(ws, jpeg, 1.5 * capacity, seconds, t) for ws, t in zip(sockets, tallies, strict=False))
    )
    await finish(finished, sockets)
    await asyncio.wait_for(asyncio.gather(*readers), 30)
    for ws in sockets:
        await ws.close()
    processed = [len(t.kinds("detections")) for t in tallies]
    for t in tallies:
        assert [r["frame_id"] for r in t.replies] == list(range(1, t.sent + 1)), (
            "one reply per frame, in order"
        )
        assert len(t.kinds("detections")) + len(t.kinds("dropped", "backpressure")) == t.sent
        assert t.sent >= 4 * capacity and t.kinds("dropped", "backpressure")
    total_sent = sum(t.sent for t in tallies)
    assert sum(processed) < total_sent / 2, "the engine cannot have served most of the overload"
    # The engine stays busy, and the three share it evenly.
    assert sum(processed) >= 0.4 * capacity * seconds, (processed, capacity)  # noisy CI boxes: generous
    assert min(processed) >= 0.7 * max(processed), processed
    # Latest frame wins: queueing stays bounded (1 waiting frame per session), latency does not grow.
    latencies = sorted(r["timing_ms"]["total"] for t in tallies for r in t.kinds("detections"))
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    assert p95 < 5 * service * 1000, (p95, service)


async def closed_loop(ws: aiohttp.ClientWebSocketResponse, jpeg: bytes, seconds: float, t: Tally) -> None:
    """Send the next frame only after the previous reply (like a polite client)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        await ws.send_bytes(jpeg)
        t.sent += 1
        t.replies.append(await next_json(ws))


async def test_fast_sender_cannot_starve_others(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(**UNLIMITED)
    jpeg = photos["coffee"]
    capacity, service = await engine_speed(client.app[AGENT].engine, jpeg)
    flood, camera, polite = Tally(), Tally(), Tally()
    async with (
        client.ws_connect("/stream/detection?client_id=flood") as fws,
        client.ws_connect("/stream/detection?client_id=camera") as cws,
        client.ws_connect("/stream/detection?client_id=polite") as pws,
    ):
        for ws in (fws, cws, pws):
            await next_json(ws)
        finished = asyncio.Event()
        readers = [
            asyncio.create_task(collect(fws, flood, finished)),
            asyncio.create_task(collect(cws, camera, finished)),
        ]
        # A flood at 6x the engine's capacity, a camera at 0.6x (above its fair third), and a client
        # that sends its next frame only after the previous reply.
        await asyncio.gather(
            paced_sender(fws, jpeg, 6 * capacity, 4.0, flood),
            paced_sender(cws, jpeg, 0.6 * capacity, 4.0, camera),
            closed_loop(pws, jpeg, 4.0, polite),
        )
        await finish(finished, [fws, cws])
        await asyncio.wait_for(asyncio.gather(*readers), 30)
    served = {
        name: len(t.kinds("detections"))
        for name, t in (("flood", flood), ("camera", camera), ("polite", polite))
    }
    assert flood.kinds("dropped", "backpressure"), "the flood must have been shed"
    assert polite.kinds("dropped") == []  # one frame at a time never waits behind itself
    # Round-robin: the camera, also above its share, is served as often as the flood.
    assert served["camera"] >= 0.6 * served["flood"], served
    assert served["polite"] >= 0.2 * sum(served.values()), served
    polite_latency = statistics.median(r["timing_ms"]["total"] for r in polite.replies)
    assert polite_latency < 3 * service * 1000, (polite_latency, service)


@dataclass
class Follower:
    """A well-behaved camera: sends at the limit it was last told; remembers what it got and when."""

    ws: aiohttp.ClientWebSocketResponse
    limit: float
    replies: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    limits: list[tuple[float, float, str]] = field(default_factory=list)
    follow: bool = True
    told: float = 0.0  # the last fps message's limit; until one comes, the session's first limit

    def __post_init__(self) -> None:
        self.told = self.told or self.limit

    async def send(self, jpeg: bytes, until: float) -> None:
        due = time.perf_counter()
        while due < until:
            await self.ws.send_bytes(jpeg)
            due += 1.0 / self.limit
            await asyncio.sleep(max(0.0, due - time.perf_counter()))

    async def read(self) -> None:
        while True:
            msg = await next_json(self.ws, skip=())
            now = time.perf_counter()
            if msg["type"] == "fps":
                self.told = msg["fps_limit"]
                self.limit = self.told if self.follow else self.limit
                self.limits.append((now, self.told, msg["reason"]))
            elif msg["type"] in ("detections", "dropped"):
                self.replies.append((now, msg))

    def between(self, t0: float, t1: float) -> tuple[int, int]:
        """(processed, dropped for backpressure) among replies from t0 to t1."""
        late = [m for at, m in self.replies if t0 <= at < t1]
        return sum(m["type"] == "detections" for m in late), sum(
            m.get("reason") == "backpressure" for m in late
        )


async def deaf(cams: list[Follower], jpeg: bytes, seconds: float) -> float:
    """Both cameras at 30 fps, deaf to fps messages: what the box processes then is its capacity,
    measured through the same path (this process runs both the clients and the server)."""
    start = time.perf_counter()
    for c in cams:
        c.follow, c.limit = False, 30.0
    await asyncio.gather(*(c.send(jpeg, start + seconds) for c in cams))
    for c in cams:
        c.follow, c.limit = True, c.told
    return sum(c.between(start + 0.5, start + seconds)[0] for c in cams) / (seconds - 0.5)


# Slow: it measures the box itself (~20 s), and on a shared box its capacity swings from second to second
# (other processes stall the one inference thread), which no controller can hide from a 5% drop budget.
@pytest.mark.slow
async def test_adaptive_fps_shares_a_slow_pipeline(serve: Serve, photos: dict[str, bytes]) -> None:
    """Two cameras following their fps messages on a one-thread engine: no backpressure, box fully used."""
    client = await serve(
        engine__cpu_threads=1,
        engine__inference_precision="f32",  # slow on AMX CPUs too, where bf16 would serve 2 x 30 fps with ease
        engine__performance_hint="LATENCY",
        streaming__min_fps=1.0,
        streaming__default_fps=30.0,
        streaming__max_fps=30.0,
    )
    jpeg = photos["coffee"]
    cams: list[Follower] = []
    for i in range(2):
        ws = await client.ws_connect(f"/stream/detection?client_id=cam{i}")
        cams.append(Follower(ws, (await next_json(ws))["fps_limit"]))
    readers = [asyncio.create_task(c.read()) for c in cams]
    start = time.perf_counter()
    capacity = [await deaf(cams, jpeg, 3.0)]
    settled = time.perf_counter() + 6.0  # a few 1 s windows to follow the share
    await asyncio.gather(*(c.send(jpeg, settled + 6.0) for c in cams))
    limits = [c.limit for c in cams]
    capacity.append(await deaf(cams, jpeg, 3.0))
    for r in readers:
        r.cancel()
    for c in cams:
        await c.ws.close()
    told = [[(round(at - start, 1), fps, why) for at, fps, why in c.limits] for c in cams]
    assert all(c.limits for c in cams), "both cameras must have been told their share"
    told = [[t for t in told_c if t[0] < settled - start + 6.0] for told_c in told]
    for c in cams:  # settled: no oscillation (a change every 1 s window), at most a few corrections
        late = [fps for at, fps, _ in c.limits if settled <= at < settled + 6.0]
        assert len(late) <= 3, told
    processed, dropped = map(sum, zip(*(c.between(settled, settled + 6.0) for c in cams), strict=True))
    assert dropped < 0.05 * (processed + dropped), (processed, dropped, told)
    total = sum(limits)
    assert 0.85 * min(capacity) <= total <= 1.15 * max(capacity), (total, capacity, told)
    assert abs(limits[0] - limits[1]) <= 0.2 * total, told


async def test_config_fps_limit_is_announced(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve()
    sse = SseReader(await client.get("/stream/events/cam"))
    async with client.ws_connect("/stream/detection?client_id=cam") as ws:
        await next_json(ws)
        await ws.send_json({"type": "config", "fps_limit": 7})
        assert (await next_json(ws, skip=()))["type"] == "config"
        fps = await next_json(ws, skip=())
        assert fps == {"type": "fps", "fps_limit": 7.0, "reason": "client asked for 7 fps"}
    assert (await sse.until("fps"))["json"]["fps_limit"] == 7.0


async def test_engine_swap_keeps_sessions(serve: Serve, photos: dict[str, bytes]) -> None:
    from edge_agent.runtime import AGENT

    client = await serve(**UNLIMITED)
    old = client.app[AGENT].engine
    async with client.ws_connect("/stream/detection?client_id=cam") as ws:
        await next_json(ws)
        await ws.send_bytes(photos["coffee"])
        assert (await next_json(ws))["type"] == "detections"
        # What a SIGHUP reload does: compile beside the old engine, swap the Ref, stop the old one.
        new = Engine(client.app[AGENT].config)
        await new.async_start()
        client.app[AGENT].engine_or_none = new
        await old.async_stop()
        for name in ("zidane", "coffee"):
            await ws.send_bytes(photos[name])
            reply = await next_json(ws)
            assert reply["type"] == "detections" and reply["detections"], name
        assert new.last_success is not None
        assert reply["frame_id"] == 3
