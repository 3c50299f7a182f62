"""GET /metrics: real Prometheus exposition after real frames, parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from edge_agent import __version__
from edge_agent.app import create_app
from edge_agent.appliance import APPLIANCE, mark_listening
from edge_agent.config import Config, LoadedConfig


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def _app(config: Config, aiohttp_client: Any) -> tuple[web.Application, Any]:
    app = create_app(LoadedConfig(config=config, sources={}, path=None))
    client = await aiohttp_client(app)
    mark_listening(app, [client.server.port])
    return app, client


async def test_metrics_after_real_frames(
    config: Config, aiohttp_client: Any, photos: dict[str, bytes]
) -> None:
    app, client = await _app(config, aiohttp_client)
    jpeg = {"Content-Type": "image/jpeg"}
    assert (await client.post("/v1/detect", data=photos["bus"], headers=jpeg)).status == 200
    assert (await client.post("/v1/detect", data=photos["zidane"], headers=jpeg)).status == 200
    assert (await client.post("/v1/detect", data=b"GIF89a not a jpeg", headers=jpeg)).status == 400

    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    got = samples(await resp.text())

    build = (("device_id", app[APPLIANCE].identity.device_id), ("version", __version__))
    assert got[("edge_agent_build_info", build)] == 1.0
    device = (("executing", "CPU"), ("fallback", "false"), ("requested", "CPU"), ("selected", "CPU"))
    assert got[("edge_agent_device_info", device)] == 1.0
    assert got[("edge_agent_infer_requests_in_flight", ())] == 0.0
    assert got[("edge_agent_infer_requests", ())] >= 1.0
    assert 0.0 <= got[("edge_agent_last_inference_age_seconds", ())] < 30.0
    assert got[("edge_agent_uptime_seconds", ())] > 0.0
    assert got[("process_resident_memory_bytes", ())] > 5e7
    # The streaming registry is the same one: frames by outcome and per-stage histograms.
    assert got[("edge_agent_frames_processed_total", ())] == 2.0
    assert got[("edge_agent_frame_errors_total", (("code", "not_jpeg"),))] == 1.0
    assert got[("edge_agent_stage_seconds_count", (("stage", "inference"),))] == 2.0
    assert ("edge_agent_stage_seconds_sum", (("stage", "total"),)) not in got  # parts only: sums add up
    parts = sum(v for (n, labels), v in got.items() if n == "edge_agent_stage_seconds_sum")
    total = got[("edge_agent_frame_seconds_sum", ())]
    assert 0.0 < parts <= total * 1.01
    assert got[("edge_agent_frame_seconds_count", ())] == 2.0
    assert got[("edge_agent_sessions_active", ())] == 0.0
    p50 = got[("edge_agent_frame_latency_seconds", (("quantile", "0.5"),))]
    assert 0.0 < p50 <= got[("edge_agent_frame_latency_seconds", (("quantile", "0.95"),))] < 30.0
    assert got[("edge_agent_frame_latency_seconds_count", ())] == 2.0
    assert got[("edge_agent_config_reloads_total", ())] == 0.0


async def test_promtool_check_metrics_is_clean(
    config: Config, aiohttp_client: Any, photos: dict[str, bytes]
) -> None:
    """Prometheus' own linter on a real scrape after real frames, errors and drops (promtool from Debian)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: apt-get install prometheus (provisioning/apt-test-packages.txt)")
    _, client = await _app(config, aiohttp_client)
    jpeg = {"Content-Type": "image/jpeg"}
    assert (await client.post("/v1/detect", data=photos["bus"], headers=jpeg)).status == 200
    assert (await client.post("/v1/detect", data=b"GIF89a not a jpeg", headers=jpeg)).status == 400
    text = await (await client.get("/metrics")).text()
    assert "edge_agent_frame_latency_seconds{quantile=" in text
    out = await asyncio.to_thread(
        subprocess.run, [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert (out.returncode, out.stdout + out.stderr) == (0, ""), out.stdout + out.stderr


async def test_two_apps_keep_separate_registries(
    config: Config, aiohttp_client: Any, photos: dict[str, bytes]
) -> None:
    _, first = await _app(config, aiohttp_client)
    _, second = await _app(config, aiohttp_client)
    await first.post("/v1/detect", data=photos["coffee"], headers={"Content-Type": "image/jpeg"})
    one = samples(await (await first.get("/metrics")).text())
    two = samples(await (await second.get("/metrics")).text())
    assert one[("edge_agent_frames_processed_total", ())] == 1.0
    assert two[("edge_agent_frames_processed_total", ())] == 0.0


def test_stage_histogram_buckets_are_cumulative_and_inclusive() -> None:
    from prometheus_client import generate_latest

    from edge_agent.inference.contract import Dropped, Result, Timings
    from edge_agent.observability import Observability, SourceStats

    obs, source = Observability.create(4), SourceStats()
    metrics = obs.metrics
    for inference_ms in (1.0, 1.5, 30.0, 9000.0):  # on a bound, between bounds, mid-range, above the last
        obs.record(source, Result([], (1, 1), Timings(0.0, 0.0, 0.0, inference_ms, 0.0, inference_ms)))
    obs.record(source, Dropped("backpressure"))
    assert (source.processed, source.dropped) == (4, {"backpressure": 1})
    got = samples(generate_latest(metrics.registry).decode())

    def bucket(le: str) -> float:
        return got[("edge_agent_stage_seconds_bucket", (("le", le), ("stage", "inference")))]

    assert [bucket(le) for le in ("0.001", "0.0025", "0.035", "5.0", "+Inf")] == [1.0, 2.0, 3.0, 3.0, 4.0]
    assert abs(got[("edge_agent_stage_seconds_sum", (("stage", "inference"),))] - 9.0325) < 1e-9
    assert got[("edge_agent_frames_processed_total", ())] == 4.0
    assert got[("edge_agent_frames_dropped_total", (("reason", "backpressure"),))] == 1.0
