"""Plain HTTP API on a real server: /v1/detect, /v1/info, /stream/performance."""

from __future__ import annotations

import asyncio

from edge_agent import __version__
from edge_agent.observability import OBSERVABILITY
from tests.support.streams import Serve, next_json, ov_cache, serve, with_dimensions

__all__ = ["ov_cache", "serve"]
JPEG = {"Content-Type": "image/jpeg"}


async def test_detect_real_photo(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve()
    resp = await client.post("/v1/detect", data=photos["zidane"], headers=JPEG)
    assert resp.status == 200
    body = await resp.json()
    assert body["type"] == "detections" and body["frame_id"] is None and body["image_size"] == [1280, 720]
    people = sorted(
        (d for d in body["detections"] if d["label"] == "person" and d["confidence"] >= 0.5),
        key=lambda d: d["box"][0],
    )
    assert len(people) == 2
    # Two men: one left of centre, one right, both reaching the bottom edge.
    assert people[0]["box"][0] < 640 < people[1]["box"][2] and people[1]["box"][0] > 500
    assert all(p["box"][3] > 650 for p in people)
    assert body["hazards"][0]["rule"] == "person" and len(body["hazards"][0]["detections"]) >= 2
    assert "active" not in body["hazards"][0]  # stateless: no debouncing across requests
    assert body["timing_ms"]["total"] > 0


async def test_detect_query_params(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve()
    resp = await client.post("/v1/detect?classes=tie&confidence=0.3", data=photos["zidane"], headers=JPEG)
    labels = {d["label"] for d in (await resp.json())["detections"]}
    assert labels == {"tie"}
    resp = await client.post(
        "/v1/detect?classes=0&confidence=0.9&iou=0.5", data=photos["zidane"], headers=JPEG
    )
    dets = (await resp.json())["detections"]
    assert [d["label"] for d in dets] == ["person"] and dets[0]["confidence"] >= 0.9


async def test_detect_bad_requests(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve()
    cases = [
        ({}, b"GIF89a", JPEG, 400, "not_jpeg"),
        ({}, b"", JPEG, 400, "empty_frame"),
        ({}, photos["coffee"][:300], JPEG, 400, "corrupt_jpeg"),
        ({}, with_dimensions(photos["coffee"], 60000, 60000), JPEG, 400, "dimensions_too_large"),
        ({}, b"\xff\xd8" + b"\0" * (2 << 20), JPEG, 413, "frame_too_large"),
        ({}, photos["coffee"], {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ({"confidence": "high"}, photos["coffee"], JPEG, 400, "bad_message"),
        ({"iou": "2"}, photos["coffee"], JPEG, 400, "bad_message"),
        ({"classes": "unicorn"}, photos["coffee"], JPEG, 400, "bad_message"),
    ]
    for params, body, headers, status, code in cases:
        resp = await client.post("/v1/detect", params=params, data=body, headers=headers)
        assert resp.status == status, (code, await resp.text())
        error = (await resp.json())["error"]
        assert error["code"] == code and error["message"]
    resp = await client.post("/v1/detect", data=photos["coffee"], headers=JPEG)
    assert resp.status == 200  # and the server goes on
    assert client.app[OBSERVABILITY].metrics.frame_errors.labels(code="not_jpeg")._value.get() == 1


async def test_concurrent_detects_all_served(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve()
    responses = await asyncio.gather(
        *(client.post("/v1/detect", data=photos["coffee"], headers=JPEG) for _ in range(8))
    )
    assert [r.status for r in responses] == [200] * 8  # never dropped: each request is its own owner


async def test_info(serve: Serve) -> None:
    client = await serve(server__token="t")
    info = await (await client.get("/v1/info")).json()
    assert info["version"] == __version__ and info["protocol"] == 1 and info["auth"] == "token"
    assert info["model"]["name"] and len(info["model"]["labels"]) == 80
    assert info["device"] == "CPU" and info["executing"] == ["CPU"] and info["num_requests"] >= 1
    assert info["limits"]["max_frame_bytes"] == 1 << 20 and info["limits"]["max_sessions"] == 16
    assert info["endpoints"]["ws"] == "/stream/detection"


async def test_performance_dashboard(serve: Serve, photos: dict[str, bytes]) -> None:
    client = await serve(streaming__max_fps=240.0, streaming__default_fps=240.0)
    idle = await (await client.get("/stream/performance")).json()
    assert idle["active_sessions"] == 0 and idle["total_throughput_fps"] == 0
    assert idle["system_resources"]["gpu"] is None
    async with client.ws_connect("/stream/detection?client_id=cam") as ws:
        await next_json(ws)
        for _ in range(5):
            await ws.send_bytes(photos["coffee"])
            await next_json(ws)
        perf = await (await client.get("/stream/performance")).json()
    assert perf["active_sessions"] == 1 and perf["total_throughput_fps"] > 0
    assert perf["avg_processing_time_ms"] > 0 and perf["stage_averages_ms"]["inference"] > 0
    assert sum(perf["bottlenecks"].values()) == 5 and perf["bottlenecks"]["inference"] >= 3
    assert perf["sessions"][0]["client_id"] == "cam" and perf["sessions"][0]["processed"] == 5
    assert 0 <= perf["system_resources"]["cpu_percent"] <= 100
    snap = client.app[OBSERVABILITY].stats.snapshot()
    assert snap["latency_p50_ms"] is not None and snap["max_sessions"] == 16


async def test_metrics_registry_counts(serve: Serve, photos: dict[str, bytes]) -> None:
    from prometheus_client import generate_latest

    client = await serve(streaming__max_fps=240.0, streaming__default_fps=240.0)
    async with client.ws_connect("/stream/detection") as ws:
        await next_json(ws)
        await ws.send_bytes(photos["coffee"])
        await next_json(ws)
        await ws.send_bytes(b"nope")
        await next_json(ws)
    text = generate_latest(client.app[OBSERVABILITY].metrics.registry).decode()
    assert "edge_agent_frames_received_total 2.0" in text
    assert "edge_agent_frames_processed_total 1.0" in text
    assert 'edge_agent_frame_errors_total{code="not_jpeg"} 1.0' in text
    assert 'edge_agent_stage_seconds_count{stage="inference"} 1.0' in text
    assert "edge_agent_sessions_total 1.0" in text
