"""What a hostile or careless LAN client sends: bad numbers, deep nesting, oversized messages, bad ids and
headers, idle and crowding peers, client id theft. Real server, real sockets, hostile clients written here."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from edge_agent.config import Config
from edge_agent.events import EventHub
from edge_agent.inference.contract import JpegFrame
from edge_agent.inference.engine import Engine
from edge_agent.observability import Observability
from edge_agent.sources.base import MAX_HELD_BYTES, MAX_UNANSWERED, Services, Source
from edge_agent.sources.registry import SOURCES
from edge_agent.sources.scheduler import Scheduler
from tests.support.streams import Serve, SseReader, eventually, next_json, ov_cache, serve

__all__ = ["ov_cache", "serve"]


def strict_json(text: str) -> Any:
    """JSON as browsers parse it: NaN and Infinity are errors."""

    def refuse(name: str) -> None:
        raise ValueError(f"{name} in output")

    return json.loads(text, parse_constant=refuse)


async def next_strict(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    while True:
        msg = await ws.receive(timeout=30)
        assert msg.type == WSMsgType.TEXT, f"expected text, got {msg.type} {msg.data!r} {msg.extra!r}"
        data: dict[str, Any] = strict_json(msg.data)
        if data["type"] != "fps":
            return data


async def test_non_finite_numbers_are_bad_messages_never_echoed(
    serve: Serve, photos: dict[str, bytes]
) -> None:
    client = await serve()
    frame = base64.b64encode(photos["coffee"]).decode()
    async with client.ws_connect("/stream/detection") as ws:
        await next_strict(ws)
        for text in (
            '{"type":"ping","timestamp":NaN}',
            '{"type":"ping","timestamp":Infinity}',
            '{"type":"ping","timestamp":1e999}',
            '{"type":"config","confidence":NaN}',
            '{"type":"config","fps_limit":NaN}',
            '{"type":"config","iou":-Infinity}',
            f'{{"type":"frame","frame_id":1,"timestamp":NaN,"image":"{frame}"}}',
        ):
            await ws.send_str(text)
            reply = await next_strict(ws)
            assert reply["type"] == "error" and reply["code"] == "bad_message", (text, reply)
        await ws.send_str('{"type":"config"}')
        settings = await next_strict(ws)
        assert settings["confidence"] == 0.35 and settings["fps_limit"] == 15.0, "nothing was applied"
        await ws.send_str(f'{{"type":"frame","frame_id":7,"timestamp":1.5,"image":"{frame}"}}')
        reply = await next_strict(ws)
        assert reply["type"] == "detections" and reply["frame_id"] == 7 and reply["timestamp"] == 1.5


async def test_deeply_nested_json_is_a_bad_message_and_the_session_goes_on(serve: Serve) -> None:
    client = await serve()
    async with client.ws_connect("/stream/detection") as ws:
        await next_json(ws)
        deep = 100_000
        for text in ("[" * deep + "]" * deep, '{"type":"frame","image":' + "[" * deep + "]" * deep + "}"):
            await ws.send_str(text)
            reply = await next_json(ws)
            assert reply["type"] == "error" and reply["code"] == "bad_message"
            assert "nested too deeply" in reply["message"]
        await ws.send_str('{"type":"ping","timestamp":3}')
        assert (await next_json(ws))["type"] == "pong"


async def test_oversized_messages_get_1009_with_a_reason(serve: Serve) -> None:
    """20 MB and 50 MB binary, 5 MB text: the close frame arrives, not a reset ("connection lost")."""
    client = await serve()
    for payload in (b"\xff" * (20 << 20), b"\xff" * (50 << 20), "x" * (5 << 20)):
        async with client.ws_connect("/stream/detection") as ws:
            await next_json(ws)
            sender = asyncio.ensure_future(
                ws.send_bytes(payload) if isinstance(payload, bytes) else ws.send_str(payload)
            )
            msg = await ws.receive(timeout=30)
            sender.cancel()
            assert msg.type == WSMsgType.CLOSE, (msg.type, msg.data, msg.extra)
            assert msg.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            assert "message too big" in str(msg.extra) and "limit" in str(msg.extra)
    await eventually(lambda: len(client.app[SOURCES].registry) == 0)


async def test_path_traversal_client_id_is_a_400_at_the_handshake(serve: Serve) -> None:
    client = await serve()
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"GET /stream/detection?client_id=../../etc/passwd%00 HTTP/1.1\r\nHost: x\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 400")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1]
    )
    body = json.loads(await reader.readexactly(length))
    assert body["error"]["code"] == "bad_client_id" and "client_id" in body["error"]["message"]
    writer.close()


async def raw_request(port: int | None, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """One hand-written HTTP request (headers may hold any bytes); status and JSON body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


async def test_odd_query_and_non_utf8_authorization_are_4xx_json(
    serve: Serve, photos: dict[str, bytes]
) -> None:
    client = await serve()
    resp = await client.post(
        "/v1/detect?classes=²", data=photos["coffee"], headers={"Content-Type": "image/jpeg"}
    )
    assert resp.status == 400 and "unknown class" in (await resp.json())["error"]["message"]
    guarded = await serve(server__token="s3cret")
    head = b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nAuthorization: Bearer \xff\xfe\x80\r\n"
    status, body = await raw_request(guarded.port, head, photos["coffee"])
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = await raw_request(
        guarded.port, head.replace(b"POST /v1/detect", b"GET /stream/performance")
    )
    assert status == 401
    resp = await client.post(
        "/v1/detect?confidence=nan", data=photos["coffee"], headers={"Content-Type": "image/jpeg"}
    )
    assert resp.status == 400 and "confidence" in (await resp.json())["error"]["message"]
    anyone = await serve(server__allowed_origins=["*"])
    odd = (
        b"GET /v1/info HTTP/1.1\r\nHost: x\r\nOrigin: http://\xff\xfe\r\nX-Forwarded-For: \xff, not-an-ip\r\n"
    )
    status, body = await raw_request(anyone.port, odd)
    assert status == 200 and body["protocol"] == 1


async def test_slow_request_body_is_cut_with_408(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(server__body_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    writer.write(
        b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        + f"Content-Length: {len(photos['coffee'])}\r\n\r\n".encode()
        + photos["coffee"][:100]
    )
    data = await asyncio.wait_for(reader.read(), 10)  # the server answers and closes
    assert data.startswith(b"HTTP/1.1 408") and b"body_timeout" in data
    writer.close()


async def test_a_session_without_a_frame_is_closed(serve: Serve) -> None:
    client = await serve(server__first_frame_timeout=0.5)
    async with client.ws_connect("/stream/detection") as ws:
        await next_json(ws)
        started = time.monotonic()
        while True:  # pings do not count as frames
            await ws.send_str('{"type":"ping"}')
            msg = await ws.receive(timeout=10)
            if msg.type != WSMsgType.TEXT:
                break
            await asyncio.sleep(0.05)
        assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert "no frame within 0.5 s" in str(msg.extra)
        print(f"closed {time.monotonic() - started:.2f} s after the hello")
    await eventually(lambda: len(client.app[SOURCES].registry) == 0)


def peer(address: str) -> dict[str, str]:
    """Headers a local reverse proxy adds: the server counts the forwarded address as the peer."""
    return {"X-Forwarded-For": address}


async def test_sessions_per_peer_are_capped(serve: Serve) -> None:
    client = await serve(server__max_sessions_per_peer=2)
    a = [await client.ws_connect("/stream/detection", headers=peer("10.0.0.5")) for _ in range(2)]
    for ws in a:
        await next_json(ws)
    async with client.ws_connect("/stream/detection", headers=peer("10.0.0.5")) as third:
        msg = await third.receive(timeout=10)
        assert (
            msg.type == WSMsgType.CLOSE
            and msg.data == 1013
            and "too many sessions from 10.0.0.5" in str(msg.extra)
        )
    async with client.ws_connect("/stream/detection", headers=peer("10.0.0.6")) as other:
        assert (await next_json(other))["type"] == "session", "another address still gets in"
    for ws in a:
        await ws.close()


async def test_a_camera_replaces_its_session_but_a_stranger_cannot(
    serve: Serve, photos: dict[str, bytes]
) -> None:
    client = await serve(streaming__max_sessions=2, server__first_frame_timeout=30.0)
    cam = await client.ws_connect("/stream/detection?client_id=cam", headers=peer("10.0.0.7"))
    await next_json(cam)
    filler = await client.ws_connect("/stream/detection", headers=peer("10.0.0.8"))
    await next_json(filler)  # every slot is taken now
    async with client.ws_connect("/stream/detection?client_id=cam", headers=peer("10.0.0.66")) as thief:
        msg = await thief.receive(timeout=10)
        assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert "in use" in str(msg.extra)
    await cam.send_bytes(photos["coffee"])
    assert (await next_json(cam))["type"] == "detections", "the camera was not kicked"
    # The camera itself reconnects (its old connection half-open): it takes over, full slots or not.
    async with client.ws_connect("/stream/detection?client_id=cam", headers=peer("10.0.0.7")) as again:
        assert (await next_json(again))["type"] == "session"
        msg = await cam.receive(timeout=10)
        assert msg.type == WSMsgType.CLOSE and "replaced" in str(msg.extra)
        await again.send_bytes(photos["coffee"])
        assert (await next_json(again))["type"] == "detections"
    await filler.close()


async def test_a_silent_old_session_can_be_taken_over_from_a_new_address(serve: Serve) -> None:
    """A camera whose address changed (DHCP) replaces its half-open session once that went silent."""
    client = await serve(server__first_frame_timeout=0.3)
    old = await client.ws_connect("/stream/detection?client_id=cam", headers=peer("10.0.0.7"))
    await next_json(old)
    await asyncio.sleep(0.4)  # the old session must be silent this long: this is what is tested
    async with client.ws_connect("/stream/detection?client_id=cam", headers=peer("10.0.0.9")) as new:
        assert (await next_json(new))["type"] == "session"
    await old.close()


async def test_disconnected_counts_every_answered_frame(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(streaming__max_fps=240.0, streaming__default_fps=240.0)
    sse = SseReader(await client.get("/stream/events/counted"))
    async with client.ws_connect("/stream/detection?client_id=counted") as ws:
        await next_json(ws)
        for _ in range(5):
            await ws.send_bytes(photos["bus"])
        for _ in range(5):
            assert (await next_json(ws))["type"] in ("detections", "dropped")
    while True:
        ev = await sse.until("session")
        if ev["json"]["state"] == "disconnected":
            break
    summary = ev["json"]
    assert summary["received"] == 5 and summary["unanswered"] == 0, summary


def masked(opcode: int, payload: bytes) -> bytes:
    """One client WebSocket frame (FIN set, masked as clients must)."""
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 1 << 16:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def deaf_client(port: int | None, client_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket peer with a tiny receive buffer that, after the handshake, never reads again."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(
        f"GET /stream/detection?client_id={client_id} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
    )
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(b"HTTP/1.1 101")
    # Each of these is answered by an error echoing the 100 kB class name: the replies fill every buffer.
    big = masked(0x1, json.dumps({"type": "config", "classes": ["x" * 100_000]}).encode())
    for _ in range(100):
        writer.write(big)
    return reader, writer


async def test_a_peer_that_stops_reading_is_cut_and_its_client_id_freed(serve: Serve) -> None:
    """Closing never waits on the peer: the stuck session ends soon after its timeout, and the camera
    reconnecting under its client_id gets its session at once instead of waiting behind the old close."""
    client = await serve(streaming__session_timeout=1.0)
    registry = client.app[SOURCES].registry
    _, deaf = await deaf_client(client.port, "stuck")
    await eventually(lambda: registry.by_client("stuck") is not None)
    started = time.monotonic()
    await eventually(lambda: len(registry) == 0, timeout=20)
    print(
        f"stuck session gone {time.monotonic() - started:.2f} s after it was seen (timeout 1 s + close deadline)"
    )
    deaf.close()

    long = await serve(streaming__session_timeout=60.0)
    _, deaf = await deaf_client(long.port, "cam")
    await eventually(lambda: long.app[SOURCES].registry.by_client("cam") is not None)
    await asyncio.sleep(0.5)  # let the replies back up: the replacement must not wait on them
    started = time.monotonic()
    async with long.ws_connect("/stream/detection?client_id=cam") as ws:
        hello = await next_json(ws)
        took = time.monotonic() - started
    print(f"replacement hello after {took:.2f} s")
    assert hello["type"] == "session" and took < 10
    deaf.close()


async def test_connections_per_peer_are_capped_probes_are_not(serve: Serve) -> None:
    client = await serve(server__max_connections_per_peer=3)
    conns = [aiohttp.ClientSession() for _ in range(4)]
    try:
        statuses = [(await c.get(client.make_url("/v1/info"))).status for c in conns]
        assert statuses == [200, 200, 200, 429]
        assert (await conns[3].get(client.make_url("/livez"))).status == 200
        await conns[0].close()
        await asyncio.sleep(0.1)  # the server sees the close on its next loop turns
        fresh = aiohttp.ClientSession()
        conns.append(fresh)
        await eventually_status(fresh, client.make_url("/v1/info"), 200)
    finally:
        for c in conns:
            await c.close()


async def eventually_status(session: aiohttp.ClientSession, url: Any, status: int) -> None:
    for _ in range(100):
        if (await session.get(url)).status == status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {status}")


class DeafSource(Source):
    """A source whose peer never takes a reply: every delivery waits until `hear` is set."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.hear = asyncio.Event()

    async def async_deliver(self, text: str) -> bool:
        await self.hear.wait()
        return True


async def test_replies_that_cannot_go_out_hold_a_bounded_amount_of_frames(
    engine: Engine, config: Config, photos: dict[str, bytes]
) -> None:
    """Hold replies, not frames: a peer that does not read makes its source stop reading after a few MB of
    frames (not 256 frames of any size), and rate-dropped frames hold no pixels at all."""
    config.streaming.max_fps = config.streaming.default_fps = 240.0
    obs = Observability.create(4)
    services = Services(Scheduler(lambda: engine), EventHub(16, 16), obs)
    source = DeafSource("deaf", "s1", config, engine.model.labels, services)
    writer = asyncio.create_task(source.async_run_writer())
    frame = photos["bus"]
    sent = 0
    while source.room.is_set():
        assert sent < MAX_UNANSWERED, "the source never stopped reading"
        source.jpeg(frame, None, None)
        sent += 1
        await asyncio.sleep(0)  # let the scheduler run what it can
    print(
        f"stopped reading after {sent} frames of {len(frame) // 1024} kB: {source.held_bytes / 2**20:.1f} MB held"
    )
    assert source.held_bytes <= MAX_HELD_BYTES + len(frame)
    source.limiter.set_rate(0.1)
    while source.limiter.allow(time.monotonic()):
        pass  # use up the burst: every frame below is rate-dropped
    held = source.held_bytes
    for _ in range(20):
        source.frame(JpegFrame(frame, 810, 1080), None, None)  # rate-dropped now
    assert source.held_bytes == held
    source.hear.set()
    source.close_outbox()
    await asyncio.wait_for(writer, 60)
    assert source.held_bytes == 0 and source.room.is_set()
