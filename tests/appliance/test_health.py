"""/livez, /readyz, /healthz on a real app with the real engine: shape, statuses, token, stall, no inference."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import openvino as ov
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from edge_agent.app import create_app
from edge_agent.appliance import APPLIANCE, mark_listening
from edge_agent.config import Config, LoadedConfig
from edge_agent.inference.engine import Engine
from edge_agent.observability import OBSERVABILITY
from edge_agent.runtime import AGENT

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
JPEG = {"Content-Type": "image/jpeg"}
HEALTH_CT = "application/health+json"


@pytest.fixture
def make_client(
    aiohttp_client: Any,
) -> Callable[[Config], Awaitable[tuple[web.Application, TestClient[Any, Any]]]]:
    async def make(config: Config) -> tuple[web.Application, TestClient[Any, Any]]:
        app = create_app(LoadedConfig(config=config, sources={}, path=None))
        client = await aiohttp_client(app)
        mark_listening(app, [client.server.port])
        return app, client

    return make


async def test_livez_readyz_pass(config: Config, make_client: Any) -> None:
    _, client = await make_client(config)
    for path in ("/livez", "/readyz"):
        resp = await client.get(path)
        assert resp.status == 200
        assert resp.content_type == HEALTH_CT
        assert (await resp.json(content_type=None))["status"] == "pass"
        assert resp.headers["Cache-Control"] == "no-store"


async def test_healthz_document(config: Config, make_client: Any, photos: dict[str, bytes]) -> None:
    app, client = await make_client(config)
    assert (await client.post("/v1/detect", data=photos["bus"], headers=JPEG)).status == 200
    resp = await client.get("/healthz")
    assert resp.status == 200 and resp.content_type == HEALTH_CT
    doc = await resp.json(content_type=None)
    assert doc["status"] == "pass"
    assert doc["serviceId"] == app[APPLIANCE].identity.device_id and re.fullmatch(
        r"[0-9a-f]{16}|.+", doc["serviceId"]
    )
    assert doc["releaseId"] == doc["version"] == "0.1.0"
    checks = doc["checks"]
    for name in (
        "inference:age",
        "inference:latency",
        "device:executing",
        "model:labels",
        "sessions:active",
        "cpu:utilization",
        "memory:utilization",
        "process:rss",
        "system:load",
        "uptime",
    ):
        assert checks[name][0]["status"] == "pass", (name, checks[name])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", checks[name][0]["time"])
    age = checks["inference:age"][0]
    assert 0 <= age["observedValue"] < 5 and age["observedUnit"] == "s" and age["limit"] == 5.0
    latency = checks["inference:latency"][0]
    assert latency["frames"] == 1 and 0 < latency["p50"] <= latency["observedValue"] < 5000
    device = checks["device:executing"][0]
    assert (device["requested"], device["selected"], device["observedValue"], device["fallback"]) == (
        "CPU",
        "CPU",
        "CPU",
        False,
    )
    model = checks["model:labels"][0]
    assert model["componentId"] == "yolov3-tiny" and model["observedValue"] == 80
    assert re.fullmatch(r"[0-9a-f]{64}", model["sha256"]) and model["inputSize"] == [416, 416]
    sessions = checks["sessions:active"][0]
    assert sessions["observedValue"] == 0 and sessions["limit"] == config.streaming.max_sessions
    assert checks["process:rss"][0]["observedValue"] > 50_000_000  # OpenVINO and a compiled model are loaded
    assert 0 <= checks["memory:utilization"][0]["observedValue"] <= 100
    assert checks["uptime"][0]["observedValue"] > 0


async def test_health_calls_run_no_inference(config: Config, make_client: Any) -> None:
    config.systemd.watchdog_probe_interval = 3600  # no background probes during the test
    app, client = await make_client(config)
    engine = app[AGENT].engine
    stats = app[OBSERVABILITY].stats
    last, frames = engine.last_success, stats.processed_total
    started = time.perf_counter()
    for _ in range(25):
        for path in ("/livez", "/readyz", "/healthz", "/metrics"):
            assert (await client.get(path)).status == 200
    elapsed = time.perf_counter() - started
    assert (engine.last_success, stats.processed_total, engine.in_flight) == (last, frames, 0)
    assert elapsed / 100 < 0.05, f"{elapsed / 100 * 1e3:.1f} ms per health call"


async def test_open_with_token_unless_configured(config: Config, make_client: Any) -> None:
    config.server.token = "s3cret"
    _, client = await make_client(config)
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/metrics")).status == 200


async def test_token_required_when_configured(config: Config, make_client: Any) -> None:
    config.server.token = "s3cret"
    config.server.health_requires_token = True
    _, client = await make_client(config)
    for path in ("/livez", "/readyz", "/healthz", "/metrics"):
        resp = await client.get(path)
        assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await resp.json())["error"]["code"] == "unauthorized"
        assert (await client.get(path, headers={"Authorization": "Bearer wrong"})).status == 401
        assert (await client.get(path, headers={"Authorization": "Bearer s3cret"})).status == 200
        assert (await client.get(path, params={"token": "s3cret"})).status == 200


async def test_stall_fails_readiness_but_not_liveness(config: Config, make_client: Any) -> None:
    config.systemd.watchdog_probe_interval = 0.1
    config.systemd.max_inference_age = 0.5
    config.debug.fault_injection = True
    _, client = await make_client(config)
    resp = await client.post("/debug/fault/stall")
    assert resp.status == 200
    deadline = time.monotonic() + 5
    while (resp := await client.get("/readyz")).status == 200:
        assert time.monotonic() < deadline, "readyz never failed after the stall"
        await asyncio.sleep(0.05)
    assert resp.status == 503 and "no inference completed" in (await resp.json(content_type=None))["output"]
    health = await client.get("/healthz")
    doc = await health.json(content_type=None)
    assert health.status == 503 and doc["status"] == "fail"
    assert doc["checks"]["inference:age"][0]["status"] == "fail"
    assert doc["checks"]["inference:age"][0]["observedValue"] > 0.5
    assert (await client.get("/livez")).status == 200


async def test_fault_route_is_404_by_default(config: Config, make_client: Any) -> None:
    _, client = await make_client(config)
    assert (await client.post("/debug/fault/stall")).status == 404
    assert (await client.get("/readyz")).status == 200


async def test_warn_when_latency_over_target(
    config: Config, make_client: Any, photos: dict[str, bytes]
) -> None:
    config.streaming.target_latency_ms = 0.01
    _, client = await make_client(config)
    assert (await client.post("/v1/detect", data=photos["coffee"], headers=JPEG)).status == 200
    doc = await (await client.get("/healthz")).json(content_type=None)
    assert doc["status"] == "pass", "one (cold) frame is not enough to judge latency"
    for _ in range(29):  # 30 frames in the window: enough to judge
        assert (await client.post("/v1/detect", data=photos["coffee"], headers=JPEG)).status == 200
    resp = await client.get("/healthz")
    doc = await resp.json(content_type=None)
    assert resp.status == 200 and doc["status"] == "warn"
    latency = doc["checks"]["inference:latency"][0]
    assert latency["status"] == "warn" and "over twice the target" in latency["output"]


class BrokenGpuCore:
    """A real Core that also lists a GPU whose compile fails (no Intel GPU exists here)."""

    def __init__(self) -> None:
        self._core = ov.Core()

    @property
    def available_devices(self) -> list[str]:
        return ["CPU", "GPU"]

    def compile_model(self, model: ov.Model, device: str, config: dict[str, Any]) -> ov.CompiledModel:
        if device == "GPU":
            raise RuntimeError("[GPU] clGetPlatformIDs failed: no OpenCL platform found")
        return self._core.compile_model(model, device, config)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)


@pytest.fixture
async def fallback_engine(config: Config) -> AsyncIterator[Engine]:
    auto = config.model_copy(update={"engine": config.engine.model_copy(update={"device": "auto"})})
    engine = Engine(auto, BrokenGpuCore())  # a fake at the OpenVINO Core boundary
    await engine.async_start()
    yield engine
    await engine.async_stop()


async def test_warn_when_fell_back_to_cpu(config: Config, make_client: Any, fallback_engine: Engine) -> None:
    app, client = await make_client(config)
    original = app[AGENT].engine
    app[AGENT].engine_or_none = fallback_engine  # what a reload does
    try:
        resp = await client.get("/healthz")
        doc = await resp.json(content_type=None)
        assert resp.status == 200 and doc["status"] == "warn"
        device = doc["checks"]["device:executing"][0]
        assert device["status"] == "warn" and device["fallback"] is True and device["requested"] == "auto"
        assert "clGetPlatformIDs" in device["output"]
        metrics = await (await client.get("/metrics")).text()
        assert (
            'edge_agent_device_info{executing="CPU",fallback="true",requested="auto",selected="CPU"} 1.0'
            in metrics
        )
    finally:
        app[AGENT].engine_or_none = original


async def test_probe_follows_a_swapped_engine(config: Config, make_client: Any, engine: Engine) -> None:
    # A probe stuck on a stalled engine must not block probing of the engine a reload swapped in.
    config.systemd.watchdog_probe_interval = 0.1
    config.systemd.max_inference_age = 1.0
    app, client = await make_client(config)
    stalled = app[AGENT].engine
    stalled.inject_stall()
    async with asyncio.timeout(5):
        while (await client.get("/readyz")).status == 200:
            await asyncio.sleep(0.05)
    app[AGENT].engine_or_none = engine  # what a reload does
    try:
        async with asyncio.timeout(5):
            while (await client.get("/readyz")).status != 200:
                await asyncio.sleep(0.05)
        # Idle for several max_inference_age periods: probes on the new engine keep it ready.
        probes = app[APPLIANCE].monitor.probes
        async with asyncio.timeout(10):
            while app[APPLIANCE].monitor.probes < probes + 5:
                await asyncio.sleep(0.05)
        assert (await client.get("/readyz")).status == 200
    finally:
        app[AGENT].engine_or_none = stalled


async def test_healthz_does_not_flap_under_light_load(config: Config, make_client: Any) -> None:
    """The soak's pattern (2 clients x 5 fps, some slow frames, a few rate drops) stays `pass`; overload warns."""
    from edge_agent.inference.contract import Timings

    app, client = await make_client(config)
    stats = app[OBSERVABILITY].stats
    target = config.streaming.target_latency_ms
    now = time.monotonic()

    def frame(ms: float, at: float) -> None:
        stats.record_result(Timings(total=ms, inference=ms), at)

    async def statuses() -> dict[str, str]:
        doc = await (await client.get("/healthz")).json(content_type=None)
        return {name: entries[0]["status"] for name, entries in doc["checks"].items()}

    for i in range(5):  # a cold start: few frames, slow and with drops: not enough to judge
        frame(10 * target, now - 9 + i)
        stats.record_drop(now - 9 + i, "backpressure")
    assert set((await statuses()).values()) == {"pass"}
    for i in range(100):  # 10 s at 10 fps: one in eight frames above target (a busy 2-core box)
        frame(1.5 * target if i % 8 == 0 else 0.4 * target, now - 9 + i * 0.09)
        if i % 20 == 0:
            stats.record_drop(now - 9 + i * 0.09, "rate")  # a client a little faster than its limit
    assert set((await statuses()).values()) == {"pass"}
    for i in range(80):  # now really overloaded: slow and shedding
        frame(3 * target, now - 1 + i / 100)
        stats.record_drop(now - 1 + i / 100, "backpressure")
    got = await statuses()
    assert (got["inference:latency"], got["sessions:active"]) == ("warn", "warn"), got
