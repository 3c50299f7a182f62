"""GET /metrics: Prometheus exposition of the streaming registry plus build, engine and process metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__
from ..observability import OBSERVABILITY
from ..runtime import AGENT
from .health import guarded
from .runtime import APPLIANCE


class ApplianceCollector(Collector):
    """Gauges read from live state at scrape time: nothing to keep in sync on the hot path."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        """Build info, executing device, in-flight requests, inference age, uptime, reloads."""
        app = self._app
        yield InfoMetricFamily(
            "edge_agent_build",
            "Edge Agent version and device id.",
            value={"version": __version__, "device_id": app[APPLIANCE].identity.device_id},
        )
        life = app[APPLIANCE].lifecycle
        yield GaugeMetricFamily("edge_agent_uptime_seconds", "Seconds since start.", value=life.uptime())
        yield CounterMetricFamily(
            "edge_agent_config_reloads", "Successful SIGHUP reloads.", value=life.reloads
        )
        engine = app[AGENT].engine_or_none
        if engine is None or engine.device is None:
            return
        dev, model = engine.device, engine.model
        device = GaugeMetricFamily(
            "edge_agent_device_info",
            "Executing inference device (1 = in use).",
            labels=["requested", "selected", "executing", "fallback"],
        )
        device.add_metric(
            [dev.requested, dev.selected, ",".join(dev.executing), str(dev.fallback).lower()], 1
        )
        yield device
        yield InfoMetricFamily(
            "edge_agent_model",
            "Loaded model.",
            value={
                "name": model.name,
                "sha256": model.sha256,
                "family": model.family,
                "precision": model.precision,
                "labels": str(len(model.labels)),
            },
        )
        yield GaugeMetricFamily(
            "edge_agent_infer_requests_in_flight", "Inference requests running.", value=engine.in_flight
        )
        yield GaugeMetricFamily(
            "edge_agent_infer_requests", "Inference requests allocated.", value=engine.num_requests
        )
        age = app[APPLIANCE].monitor.age()
        if age is not None:
            yield GaugeMetricFamily(
                "edge_agent_last_inference_age_seconds",
                "Seconds since an inference last completed.",
                value=age,
            )
        yield _latency_summary(app)


def _latency_summary(app: web.Application) -> Metric:
    """Frame latency quantiles over the last 10 s (a summary: count and sum are since start)."""
    obs = app[OBSERVABILITY]
    summary = Metric(
        "edge_agent_frame_latency_seconds",
        "Frame latency, arrival to result; quantiles of the last 10 s.",
        "summary",
    )
    for q in (50, 95):
        value = obs.stats.latency_ms(q)
        if value is not None:
            summary.add_sample("edge_agent_frame_latency_seconds", {"quantile": str(q / 100)}, value / 1000)
    summary.add_sample("edge_agent_frame_latency_seconds_count", {}, float(obs.metrics.frames.processed))
    summary.add_sample("edge_agent_frame_latency_seconds_sum", {}, obs.metrics.frames.total_seconds)
    return summary


@dataclass
class Exposition:
    """The registry /metrics serves: the streaming one when mounted, else our own."""

    registry: CollectorRegistry | None = None


METRICS_EXPOSITION_KEY: web.AppKey[Exposition] = web.AppKey("metrics_exposition", Exposition)


async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
    """At start-up (every setup ran by then) add our collectors to the app's registry."""
    registry = app[OBSERVABILITY].metrics.registry
    own = ApplianceCollector(app)
    registry.register(own)
    process = ProcessCollector(registry=None)
    registry.register(process)
    app[METRICS_EXPOSITION_KEY].registry = registry
    yield
    registry.unregister(own)
    registry.unregister(process)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    registry = request.app[METRICS_EXPOSITION_KEY].registry
    if registry is None:
        raise web.HTTPServiceUnavailable(text="metrics not ready")
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_metrics_routes(app: web.Application) -> None:
    """Register /metrics and the registry holder."""
    app[METRICS_EXPOSITION_KEY] = Exposition()
    app.router.add_get("/metrics", guarded(metrics, metrics=True))
