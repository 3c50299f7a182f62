"""WebSocket clients of `edge-agent bench`: closed loop (next frame after the reply) and open loop (a camera)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .bench_photos import Photo


@dataclass
class Run:
    """Figures of one measurement; `stages` holds the server's timing_ms of each processed frame."""

    fps: float
    p50: float
    p99: float
    dropped: int = 0
    errors: int = 0
    answered: int = 0  # every reply, warm-up included
    loop_cpu_ms: float = float("nan")  # the server's event-loop thread CPU per answered frame
    client_cpu_ms: float = float("nan")  # the bench's own CPU per answered frame
    latencies: list[float] = field(default_factory=list, repr=False)
    stages: list[dict[str, float]] = field(default_factory=list, repr=False)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def summarise(run: Run, counts: list[int], seconds: float) -> Run:
    """Fill in FPS and latency percentiles."""
    if run.latencies:
        run.fps = sum(counts) / seconds
        run.p50 = percentile(run.latencies, 50)
        run.p99 = percentile(run.latencies, 99)
    return run


@contextlib.asynccontextmanager
async def connect(url: str, token: str | None) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """One protocol-1 session, past its hello."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers, max_msg_size=0) as ws:
        await ws.receive_json()  # session
        yield ws


async def _frame_reply(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        reply: dict[str, Any] = await ws.receive_json()
        if reply["type"] in ("detections", "dropped", "error"):
            return reply


async def _closed_client(
    url: str, token: str | None, photos: list[Photo], first: int, until: float, warm_until: float, run: Run
) -> int:
    done = 0
    async with connect(url, token) as ws:
        k = first
        while (now := time.perf_counter()) < until:
            await ws.send_bytes(photos[k % len(photos)].data)
            k += 1
            reply = await _frame_reply(ws)
            run.answered += 1
            if now < warm_until:
                continue
            if reply["type"] == "detections":
                run.latencies.append((time.perf_counter() - now) * 1e3)
                run.stages.append(reply["timing_ms"])
                done += 1
            elif reply["type"] == "dropped":
                run.dropped += 1
            else:
                run.errors += 1
    return done


async def drive(url: str, clients: int, seconds: float, photos: list[Photo], token: str | None = None) -> Run:
    """Closed loop: each client sends its next photo (round-robin, each from its own start) after the reply."""
    run = Run(0.0, 0.0, 0.0)
    start = time.perf_counter()
    warm = 1.0
    counts = await asyncio.gather(
        *(
            _closed_client(url, token, photos, i, start + warm + seconds, start + warm, run)
            for i in range(clients)
        )
    )
    return summarise(run, list(counts), seconds)


@dataclass
class Camera:
    """One open-loop client: what it sent and what came back."""

    sent: int = 0
    processed: int = 0
    dropped: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    stages: list[dict[str, float]] = field(default_factory=list, repr=False)  # timing_ms of processed frames
    sent_at: dict[int, float] = field(default_factory=dict, repr=False)
    order_ok: bool = True


async def _camera(
    url: str, token: str | None, photos: list[Photo], first: int, fps: float, seconds: float
) -> Camera:
    cam = Camera()
    async with connect(url, token) as ws:
        sender = asyncio.create_task(_send_paced(ws, photos, first, fps, seconds, cam))
        expected = 1
        while not (sender.done() and expected > cam.sent):
            try:
                reply = await asyncio.wait_for(_frame_reply(ws), 10.0)
            except TimeoutError:
                break  # a frame never answered: counted as missing by the caller
            cam.order_ok &= reply["frame_id"] == expected
            expected += 1
            if reply["type"] == "detections":
                cam.processed += 1
                cam.latencies.append((time.perf_counter() - cam.sent_at[reply["frame_id"]]) * 1e3)
                cam.stages.append(reply["timing_ms"])
            elif reply["type"] == "dropped":
                cam.dropped += 1
            else:
                cam.errors += 1
        await sender
    return cam


async def _send_paced(
    ws: aiohttp.ClientWebSocketResponse,
    photos: list[Photo],
    first: int,
    fps: float,
    seconds: float,
    cam: Camera,
) -> None:
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        cam.sent_at[cam.sent + 1] = time.perf_counter()
        await ws.send_bytes(photos[(first + cam.sent) % len(photos)].data)
        cam.sent += 1
        await asyncio.sleep(max(0.0, start + cam.sent / fps - time.perf_counter()))


async def overload(
    url: str, clients: int, fps: float, seconds: float, photos: list[Photo], token: str | None = None
) -> list[Camera]:
    """Open loop: `clients` cameras each sending `fps` frames per second whatever the replies."""
    return list(await asyncio.gather(*(_camera(url, token, photos, i, fps, seconds) for i in range(clients))))


@contextlib.asynccontextmanager
async def idle_sessions(url: str, count: int, token: str | None = None) -> AsyncIterator[int]:
    """Open `count` sessions that send nothing; yields how many were accepted."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = await asyncio.gather(
            *(http.ws_connect(url, headers=headers) for _ in range(count)), return_exceptions=True
        )
        opened = [ws for ws in sockets if isinstance(ws, aiohttp.ClientWebSocketResponse)]
        hellos = await asyncio.gather(*(ws.receive() for ws in opened))
        accepted = sum(1 for msg in hellos if msg.type == aiohttp.WSMsgType.TEXT)
        try:
            yield accepted
        finally:
            await asyncio.gather(*(ws.close() for ws in opened))
