"""Typed application keys: all shared state lives on the app, never in module globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from aiohttp import web

from ..config import LoadedConfig

if TYPE_CHECKING:
    from ..engine import Engine
    from .events import EventHub
    from .metrics import StreamMetrics
    from .registry import SessionRegistry
    from .scheduler import Scheduler
    from .stats import LiveStats

T = TypeVar("T")


@dataclass
class Ref(Generic[T]):
    """A mutable holder, so a reload can swap the engine or config of a running (frozen) app."""

    value: T


CONFIG_KEY: web.AppKey[Ref[LoadedConfig]] = web.AppKey("config")
ENGINE_KEY: web.AppKey[Ref[Engine]] = web.AppKey("engine")
# Prometheus registry (.registry) with the streaming counters and histograms; /metrics serves it.
METRICS_KEY: web.AppKey[StreamMetrics] = web.AppKey("metrics")
# Cheap live figures for health checks: sessions, fps, drop ratio, latency percentiles.
STATS_KEY: web.AppKey[LiveStats] = web.AppKey("stats")
SESSIONS_KEY: web.AppKey[SessionRegistry] = web.AppKey("sessions")
EVENTS_KEY: web.AppKey[EventHub] = web.AppKey("events")
SCHEDULER_KEY: web.AppKey[Scheduler] = web.AppKey("scheduler")
