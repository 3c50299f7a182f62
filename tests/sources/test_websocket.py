"""Protocol 1 end to end: real server, real sockets, real engine and photographs."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from edge_agent.app import create_app
from edge_agent.config import Config
from edge_agent.observability import OBSERVABILITY
from edge_agent.sources.registry import SOURCES
from tests.support.streams import (
    Serve,
    SseReader,
    eventually,
    loaded,
    next_json,
    ov_cache,
    serve,
    with_dimensions,
)

__all__ = ["ov_cache", "serve"]  # fixtures used by the tests below


async def test_hello_detections_and_numbering(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(streaming__max_fps=240.0)
    async with client.session.ws_connect(client.make_url("/stream/detection?client_id=cam-1")) as ws:
        hello = await next_json(ws)
        assert hello["type"] == "session" and hello["protocol"] == 1 and hello["client_id"] == "cam-1"
        assert hello["fps_limit"] == 15.0 and hello["max_fps"] == 240.0 and hello["device"] == "CPU"
        assert hello["model"]["input_size"] == [416, 416] and "person" in hello["model"]["labels"]
        assert len(hello["session_id"]) == 16
        await ws.send_json({"type": "config", "fps_limit": 240})
        assert (await next_json(ws))["fps_limit"] == 240
        replies = []
        for name in ("bus", "zidane", "coffee"):
            await ws.send_bytes(photos[name])
            replies.append(await next_json(ws))
    assert [r["frame_id"] for r in replies] == [1, 2, 3]
    bus, zidane, coffee = replies
    assert bus["type"] == "detections" and bus["image_size"] == [810, 1080]
    people = [d for d in bus["detections"] if d["label"] == "person"]
    assert len(people) >= 2
    # The most confident person stands at the left of the bus photo, full height.
    top = max(people, key=lambda d: d["confidence"])
    x1, y1, x2, y2 = top["box"]
    assert x1 < 150 and x2 < 300 and y1 > 300 and y2 > 800
    assert set(top) == {"label", "class_id", "confidence", "box"} and top["class_id"] == 0
    assert [d["label"] for d in coffee["detections"]] == ["cup"]
    assert coffee["hazards"] == []
    assert bus["hazards"][0]["rule"] == "person" and bus["hazards"][0]["active"] is False
    assert zidane["hazards"][0]["active"] is True  # two person frames in a row: min_frames=2
    assert set(bus["timing_ms"]) == {"queue", "decode", "preprocess", "inference", "postprocess", "total"}
    assert bus["timing_ms"]["inference"] > 0 and bus["timing_ms"]["total"] >= bus["timing_ms"]["inference"]
    assert isinstance(bus["timestamp"], float)


async def test_text_frames_echo_id_and_timestamp(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve()
    async with client.ws_connect("/stream/detection") as ws:
        hello = await next_json(ws)
        assert hello["client_id"].startswith("client-")
        b64 = base64.b64encode(photos["coffee"]).decode()
        await ws.send_json({"type": "frame", "frame_id": 41, "image": b64, "timestamp": 1234.5})
        reply = await next_json(ws)
        assert (reply["type"], reply["frame_id"], reply["timestamp"]) == ("detections", 41, 1234.5)
        await ws.send_json({"type": "frame", "image": "data:image/jpeg;base64," + b64})
        reply = await next_json(ws)
        assert reply["type"] == "detections" and reply["frame_id"] == 2  # numbered like any frame
        assert reply["detections"][0]["label"] == "cup"


async def test_config_classes_confidence_and_ping(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve()
    async with client.ws_connect("/stream/detection") as ws:
        await next_json(ws)
        await ws.send_json({"type": "config", "classes": ["tie"], "confidence": 0.3, "iou": 0.5})
        effective = await next_json(ws)
        assert effective == {
            "type": "config",
            "fps_limit": 15.0,
            "confidence": 0.3,
            "iou": 0.5,
            "classes": ["tie"],
        }
        await ws.send_bytes(photos["zidane"])
        labels = {d["label"] for d in (await next_json(ws))["detections"]}
        assert labels == {"tie"}
        await ws.send_json({"type": "config", "classes": ["unicorn"]})
        err = await next_json(ws)
        assert err == {
            "type": "error",
            "frame_id": None,
            "code": "bad_message",
            "message": "unknown class 'unicorn'",
        }
        await ws.send_json({"type": "config", "classes": None, "confidence": 0.9})
        effective = await next_json(ws)
        assert effective["classes"] is None and effective["confidence"] == 0.9 and effective["iou"] == 0.5
        await ws.send_bytes(photos["zidane"])
        dets = (await next_json(ws))["detections"]
        assert [d["label"] for d in dets] == ["person"]  # only the 0.91 person passes 0.9
        await ws.send_json({"type": "ping", "timestamp": 7.0})
        pong = await next_json(ws)
        assert pong["type"] == "pong" and pong["timestamp"] == 7.0


def bad_inputs(photos: dict[str, bytes]) -> list[tuple[str, Any, str, bool]]:
    """(case, message (bytes = binary), expected code, answered as a numbered frame)."""
    jpeg = photos["coffee"]
    return [
        ("not jpeg", b"GIF89a not a jpeg at all", "not_jpeg", True),
        ("truncated", jpeg[:200], "corrupt_jpeg", True),
        ("empty", b"", "empty_frame", True),
        ("oversized", b"\xff\xd8" + b"\0" * (1 << 20), "frame_too_large", True),
        ("absurd dimensions", with_dimensions(jpeg, 60000, 60000), "dimensions_too_large", True),
        ("bad json", "{not json", "bad_message", False),
        ("json array", "[1,2,3]", "bad_message", False),
        ("wrong type", json.dumps({"type": "config", "fps_limit": "fast"}), "bad_message", False),
        ("frame without image", json.dumps({"type": "frame", "frame_id": 3}), "bad_message", False),
        ("unknown type", json.dumps({"type": "selfdestruct"}), "bad_message", False),
        (
            "bad base64",
            json.dumps({"type": "frame", "frame_id": 9, "image": "%%%not-b64"}),
            "bad_base64",
            True,
        ),
        (
            "base64 not jpeg",
            json.dumps({"type": "frame", "image": base64.b64encode(b"hi").decode()}),
            "not_jpeg",
            True,
        ),
        ("text too large", json.dumps({"type": "ping", "pad": "x" * (2 << 20)}), "message_too_large", False),
    ]


async def test_bad_input_table(serve: Serve, photos: dict[str, bytes]) -> None:
    # Replies come back-to-back: a rate above what one photo per round trip needs keeps drops out of it.
    client = await serve(streaming__default_fps=30)
    cases = bad_inputs(photos)
    async with (
        client.ws_connect("/stream/detection?client_id=fuzz") as ws,
        client.ws_connect("/stream/detection?client_id=bystander") as other,
    ):
        await next_json(ws)
        await next_json(other)
        frames = 0
        for case, message, code, numbered in cases:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)
            frames += numbered
            err = await next_json(ws)
            assert err["type"] == "error" and err["code"] == code, case
            assert err["message"], case
            expected_id = (9 if case == "bad base64" else frames) if numbered else None
            assert err["frame_id"] == expected_id, case
            # The same session still processes a good frame, and so does everyone else.
            await ws.send_bytes(photos["coffee"])
            frames += 1
            good = await next_json(ws)
            assert (good["type"], good["frame_id"]) == ("detections", frames), case
            assert good["detections"][0]["label"] == "cup", case
            await other.send_bytes(photos["coffee"])
            assert (await next_json(other))["type"] == "detections", case
    metrics = client.app[OBSERVABILITY].metrics
    assert metrics.frame_errors.labels(code="not_jpeg")._value.get() == 2


async def test_frame_above_hard_limit_closes_1009(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(engine__max_frame_bytes=128 * 1024, streaming__max_text_bytes=128 * 1024)
    async with client.ws_connect("/stream/detection") as ws:
        await next_json(ws)
        await ws.send_bytes(photos["coffee"] + b"\0" * (100 * 1024))  # above the limit, below 2x
        assert (await next_json(ws))["code"] == "frame_too_large"
        await ws.send_bytes(b"\0" * (300 * 1024))  # above the hard limit: the connection is closed
        msg = await ws.receive(timeout=10)
        assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    async with client.ws_connect("/stream/detection") as ws:  # the server is fine
        await next_json(ws)
        await ws.send_bytes(photos["coffee"])
        assert (await next_json(ws))["type"] == "detections"


async def test_rate_limit_drops_fast_frames(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(streaming__default_fps=5.0)
    async with client.ws_connect("/stream/detection") as ws:
        await next_json(ws)
        for _ in range(12):
            await ws.send_bytes(photos["coffee"])
        replies = [await next_json(ws) for _ in range(12)]
    assert [r["frame_id"] for r in replies] == list(range(1, 13))
    kinds = [(r["type"], r.get("reason")) for r in replies]
    # A burst of 2 passes the limiter; the rest of a 12-frame burst is far above 5 fps.
    assert kinds.count(("dropped", "rate")) >= 9
    assert sum(1 for k, _ in kinds if k == "detections") + kinds.count(("dropped", "backpressure")) <= 3


async def test_idle_timeout_closes_1001(serve: Serve) -> None:
    client = await serve(streaming__session_timeout=0.5)
    async with client.ws_connect("/stream/detection") as ws:
        await next_json(ws)
        msg = await ws.receive(timeout=10)
        assert msg.type == WSMsgType.CLOSE
        assert msg.data == aiohttp.WSCloseCode.GOING_AWAY and "idle timeout" in str(msg.extra)
    await eventually(lambda: len(client.app[SOURCES].registry) == 0)


async def test_max_sessions_1013(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(streaming__max_sessions=2)
    async with client.ws_connect("/stream/detection") as a, client.ws_connect("/stream/detection") as b:
        await next_json(a)
        await next_json(b)
        async with client.ws_connect("/stream/detection") as c:
            msg = await c.receive(timeout=10)
            assert msg.type == WSMsgType.CLOSE and msg.data == 1013 and "server busy" in str(msg.extra)
        await a.send_bytes(photos["coffee"])
        assert (await next_json(a))["type"] == "detections"
    async with client.ws_connect("/stream/detection") as c:  # room again after they left
        assert (await next_json(c))["type"] == "session"


async def test_same_client_id_replaces_older_connection(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve()
    async with client.ws_connect("/stream/detection?client_id=cam") as old:
        await next_json(old)
        async with client.ws_connect("/stream/detection?client_id=cam") as new:
            await next_json(new)
            msg = await old.receive(timeout=10)
            assert msg.type == WSMsgType.CLOSE and "replaced" in str(msg.extra)
            await new.send_bytes(photos["coffee"])
            assert (await next_json(new))["type"] == "detections"
    resp = await client.get("/stream/detection?client_id=bad%20id!")  # refused at the handshake
    assert resp.status == 400 and (await resp.json())["error"]["code"] == "bad_client_id"


async def test_token_auth(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(server__token="s3cret")
    for query, headers in (("", {}), ("?token=nope", {}), ("", {"Authorization": "Bearer nope"})):
        async with client.ws_connect("/stream/detection" + query, headers=headers) as ws:
            msg = await ws.receive(timeout=10)
            assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.POLICY_VIOLATION
            assert "token" in str(msg.extra)
        resp = await client.get("/stream/events" + query, headers=headers)
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
        resp = await client.post(
            "/v1/detect" + query, data=photos["coffee"], headers={**headers, "Content-Type": "image/jpeg"}
        )
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    async with client.ws_connect("/stream/detection?token=s3cret") as ws:
        assert (await next_json(ws))["type"] == "session"
    async with client.ws_connect("/stream/detection", headers={"Authorization": "Bearer s3cret"}) as ws:
        await next_json(ws)
        await ws.send_bytes(photos["coffee"])
        assert (await next_json(ws))["type"] == "detections"
    resp = await client.post(
        "/v1/detect",
        data=photos["coffee"],
        headers={"Authorization": "Bearer s3cret", "Content-Type": "image/jpeg"},
    )
    assert resp.status == 200
    assert (await client.get("/v1/info")).status == 200  # info stays open


async def test_allowed_origins(serve: Serve) -> None:
    client = await serve(server__allowed_origins=["http://dash.local"])
    async with client.ws_connect("/stream/detection", origin="http://evil.example") as ws:
        msg = await ws.receive(timeout=10)
        assert msg.type == WSMsgType.CLOSE and "origin" in str(msg.extra)
    async with client.ws_connect("/stream/detection", origin="http://dash.local") as ws:
        assert (await next_json(ws))["type"] == "session"
    resp = await client.get("/stream/events", headers={"Origin": "http://evil.example"})
    assert resp.status == 403


async def test_no_permessage_deflate(serve: Serve) -> None:
    client = await serve()
    async with client.ws_connect("/stream/detection", compress=15) as ws:
        await next_json(ws)
        assert ws.compress == 0  # offered by the client, declined by the server
        assert "Sec-WebSocket-Extensions" not in ws._response.headers


async def test_shutdown_closes_sessions_1001(serve: Serve) -> None:
    client = await serve()
    async with client.ws_connect("/stream/detection") as ws:
        await next_json(ws)
        await client.app[SOURCES].registry.async_close_all()
        msg = await ws.receive(timeout=10)
        assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.GOING_AWAY
        assert "shutting down" in str(msg.extra)
    async with client.ws_connect("/stream/detection") as ws:  # and no new ones are admitted
        msg = await ws.receive(timeout=10)
        assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.GOING_AWAY


async def test_server_shutdown_closes_ws_1001_and_ends_sse(config: Config, ov_cache: Path) -> None:
    server = TestServer(create_app(loaded(config, ov_cache, {})))
    await server.start_server()
    async with aiohttp.ClientSession() as http:
        sse = SseReader(await http.get(server.make_url("/stream/events")))
        ws = await http.ws_connect(server.make_url("/stream/detection"))
        await next_json(ws)
        assert (await sse.next())["json"]["state"] == "connected"
        started = time.monotonic()
        closing = asyncio.create_task(server.close())  # aiohttp's real shutdown sequence
        msg = await ws.receive(timeout=10)
        assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.GOING_AWAY
        with pytest.raises(EOFError):
            while True:
                await sse.next(timeout=10)
        await closing
        assert time.monotonic() - started < 5  # not the shutdown timeout: streams ended promptly


async def test_writer_bug_closes_1011_and_others_go_on(
    serve: Serve, photos: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_agent.sources.hazards import HazardTracker

    client = await serve()
    async with client.ws_connect("/stream/detection?client_id=ok") as ok:
        await next_json(ok)
        real_update = HazardTracker.update

        def broken(self: HazardTracker, *args: Any, **kwargs: Any) -> Any:
            if self is victim.hazards:
                raise RuntimeError("bug in hazard evaluation")
            return real_update(self, *args, **kwargs)

        async with client.ws_connect("/stream/detection?client_id=victim") as ws:
            await next_json(ws)
            victim = client.app[SOURCES].registry.by_client("victim")
            assert victim is not None
            monkeypatch.setattr(HazardTracker, "update", broken)
            await ws.send_bytes(photos["coffee"])
            msg = await ws.receive(timeout=10)
            assert msg.type == WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.INTERNAL_ERROR
        await ok.send_bytes(photos["coffee"])
        reply = await next_json(ok)
        assert reply["type"] == "detections"
        perf = await (await client.get("/stream/performance")).json()
        assert perf["sessions"][0]["latency_p50_ms"] > 0


async def test_hazard_rules_keep_the_servers_thresholds_whatever_a_viewer_shows(
    serve: Serve, photos: dict[str, bytes]
) -> None:
    client = await serve()
    async with client.ws_connect("/stream/detection?client_id=site-cam") as ws:
        await next_json(ws)
        # A viewer shows only very confident cups: the person rule must still see the people.
        await ws.send_json({"type": "config", "classes": ["cup"], "confidence": 0.99})
        assert (await next_json(ws))["type"] == "config"
        replies = []
        for _ in range(2):  # the default person rule starts after 2 frames
            await ws.send_bytes(photos["bus"])
            replies.append(await next_json(ws))
        assert all(r["type"] == "detections" and r["detections"] == [] for r in replies), replies
        rules = {h["rule"]: h for h in replies[1]["hazards"]}
        assert rules["person"]["active"] is True and rules["person"]["detections"] == []
