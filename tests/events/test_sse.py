"""SSE end to end: dashboards see the same detections, hazard transitions, resume, slow readers."""

from __future__ import annotations

import asyncio
from typing import Any

from edge_agent.events import EVENTS, FpsEvent
from edge_agent.sources.registry import SOURCES
from tests.support.streams import Serve, SseReader, eventually, next_json, ov_cache, serve

__all__ = ["ov_cache", "serve"]
FAST = {"streaming__max_fps": 240.0, "streaming__default_fps": 240.0}


async def test_sse_sees_detections_hazards_and_sessions(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(**FAST)
    # The dashboard subscribes before its camera connects.
    resp = await client.get("/stream/events/cam-7")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-cache, no-store"
    assert resp.headers["X-Accel-Buffering"] == "no"
    sse = SseReader(resp)
    replies: list[dict[str, Any]] = []
    sequence = ["bus", "zidane", "zidane"] + ["coffee"] * 5
    async with client.ws_connect("/stream/detection?client_id=cam-7") as ws:
        await next_json(ws)
        for name in sequence:
            await ws.send_bytes(photos[name])
            replies.append(await next_json(ws))
    events: list[dict[str, Any]] = []
    while not (events and events[-1]["event"] == "session" and events[-1]["json"]["state"] == "disconnected"):
        events.append(await sse.next())
    resp.close()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "session" and events[0]["json"]["state"] == "connected"
    assert events[-1]["json"]["processed"] == len(sequence)
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    detections = [e["json"] for e in events if e["event"] == "detections"]
    assert [d.pop("client_id") for d in detections] == ["cam-7"] * len(sequence)
    assert detections == replies  # the very same JSON as the WebSocket replies
    hazards = [
        (e["json"]["rule"], e["json"]["state"], e["json"]["frame_id"])
        for e in events
        if e["event"] == "hazard"
    ]
    # Started on the 2nd person frame (min_frames=2), ended on the 5th clear frame (clear_frames=5).
    assert hazards == [("person", "started", 2), ("person", "ended", 8)]
    started = kinds.index("hazard")
    assert events[started - 1]["json"]["frame_id"] == 2  # right after the frame that started it


async def test_disconnect_ends_active_hazard_and_all_stream(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(**FAST)
    sse = SseReader(await client.get("/stream/events"))
    async with (
        client.ws_connect("/stream/detection?client_id=a") as a,
        client.ws_connect("/stream/detection?client_id=b") as b,
    ):
        await next_json(a)
        await next_json(b)
        for _ in range(2):
            await a.send_bytes(photos["bus"])
            await next_json(a)
        await b.send_bytes(photos["coffee"])
        await next_json(b)
    seen: list[tuple[str, str, str]] = []
    while len([s for s in seen if s[1] == "session" and s[2] == "disconnected"]) < 2:
        ev = await sse.next()
        data = ev["json"]
        seen.append((data["client_id"], ev["event"], data.get("state", "")))
    assert ("a", "hazard", "started") in seen and ("a", "hazard", "ended") in seen
    assert seen.index(("a", "hazard", "ended")) < seen.index(("a", "session", "disconnected"))
    assert {c for c, kind, _ in seen if kind == "detections"} == {"a", "b"}


async def test_last_event_id_resume(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(**FAST)
    witness = SseReader(await client.get("/stream/events/cam"))  # follows without interruption
    first = await client.get("/stream/events/cam")
    reader = SseReader(first)
    async with client.ws_connect("/stream/detection?client_id=cam") as ws:
        await next_json(ws)
        for _ in range(3):
            await ws.send_bytes(photos["coffee"])
            await next_json(ws)
        got = [await reader.next() for _ in range(3)]  # session + 2 detections
        first.close()
        last_id = got[-1]["id"]
        for _ in range(4):
            await ws.send_bytes(photos["zidane"])
            await next_json(ws)
        resumed = SseReader(await client.get("/stream/events/cam", headers={"Last-Event-ID": str(last_id)}))
        missed = [await resumed.next() for _ in range(6)]  # 1 + 4 detections, 1 hazard started
    everything = [await witness.next() for _ in range(3 + 6)]
    assert [e["id"] for e in missed] == [e["id"] for e in everything[3:]]
    assert [e["data"] for e in missed] == [e["data"] for e in everything[3:]]
    assert missed[0]["id"] == last_id + 1


async def test_resume_beyond_buffer_says_what_was_lost(serve: Serve) -> None:
    client = await serve(streaming__event_buffer=4)
    hub = client.app[EVENTS]
    for i in range(10):
        hub.publish(FpsEvent("cam", float(i), "test"))
    resp = await client.get("/stream/events/cam", headers={"Last-Event-ID": "2"})
    reader = SseReader(resp)
    note = await reader.next(comments=True)
    assert note == {"comment": "events 3..6 are no longer buffered"}
    assert [(await reader.next())["id"] for _ in range(4)] == [7, 8, 9, 10]


async def test_keepalive_comment(serve: Serve) -> None:
    client = await serve(streaming__keepalive_interval=0.2)
    reader = SseReader(await client.get("/stream/events"))
    assert await reader.next(timeout=5, comments=True) == {"comment": "keep-alive"}


async def test_slow_reader_stays_bounded(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(streaming__subscriber_queue=32)
    hub = client.app[EVENTS]
    # A raw socket that asks for the stream and then does not read.
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /stream/events/slow HTTP/1.1\r\nHost: test\r\n\r\n")
    await writer.drain()
    await eventually(lambda: hub.subscribers == 1)
    sub = next(iter(hub._subs["slow"]))
    payload = "x" * 4000
    for i in range(4000):  # 16 MB: far more than socket buffers hold
        hub.publish(FpsEvent("slow", float(i), payload))
        assert sub.pending <= 32
        if i % 8 == 0:
            await asyncio.sleep(0)  # let the server write what the socket takes
    assert sub.dropped > 0, "the reader should have fallen behind"
    # Meanwhile everyone else is served.
    async with client.ws_connect("/stream/detection") as ws:
        await next_json(ws)
        await ws.send_bytes(photos["coffee"])
        assert (await next_json(ws))["type"] == "detections"
    # The slow reader finally reads: it is told how much it lost and gets the newest events.
    data = b""
    async with asyncio.timeout(30):
        while b'"fps_limit":3999.0' not in data:
            chunk = await reader.read(1 << 20)
            assert chunk, "stream ended early"
            data += chunk
    assert b": dropped " in data and b"(slow reader)" in data
    assert data.count(b"event: detections") < 4000
    writer.close()


async def test_shutdown_ends_sse_streams(serve: Serve) -> None:
    client = await serve()
    reader = SseReader(await client.get("/stream/events/cam"))
    await eventually(lambda: client.app[EVENTS].subscribers == 1)
    await client.app[SOURCES].registry.async_close_all()
    try:
        while True:
            await reader.next(timeout=10)
    except EOFError:
        pass
    await eventually(lambda: client.app[EVENTS].subscribers == 0)


async def test_resume_from_zero_is_bounded_and_names_no_foreign_gap(serve: Serve) -> None:
    """A resume from id 0 over a long history gets at most the subscriber's bound (the newest), and a
    client's stream announces no gap for ids that belonged to other clients."""
    client = await serve(streaming__event_buffer=1000, streaming__subscriber_queue=16)
    hub = client.app[EVENTS]
    for i in range(58):
        hub.publish(FpsEvent("other", float(i), "test"))
    for i in range(300):
        hub.publish(FpsEvent(f"c{i % 3}", float(i), "test"))
    reader = SseReader(await client.get("/stream/events", headers={"Last-Event-ID": "0"}))
    assert [(await reader.next())["id"] for _ in range(16)] == list(range(343, 359))
    mine = SseReader(await client.get("/stream/events/other", headers={"Last-Event-ID": "0"}))
    first = await mine.next(comments=True)
    assert "no longer buffered" not in first.get("comment", ""), first
    assert first["id"] == 43, "the newest 16 of other's 58 events (ids 1..58), oldest first"
