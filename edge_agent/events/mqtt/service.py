"""The MQTT sink of the event hub: turns events into messages; hazards go to the on-disk outbox first."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ...config import Config
from ...config.events import MqttConfig
from ..history import HazardHistory, event_row
from ..hub import Event
from ..types import DetectionsEvent, HazardEvent, SourceEvent
from .discovery import Device
from .outbox import Message, Outbox
from .topics import SourceRate, Topics, compact, detections_payload

log = logging.getLogger(__name__)

LIVE_MAX = 1000  # detection summaries waiting for a connection; older ones are dropped (not kept on disk)
MAX_SOURCES = (
    256  # sources with entities and retained topics; peers choose ids, so the broker's share is bounded
)


@dataclass(frozen=True)
class MqttHost:
    """What the agent tells the broker about itself, read when (re)connecting."""

    agent_id: str
    device: Callable[[], Device]
    health: Callable[[], dict[str, Any]]


class MqttService:
    """State shared by the hub sink, the outbox writer and the publisher task."""

    def __init__(self, config: Callable[[], Config], host: MqttHost, history: HazardHistory) -> None:
        self.config = config
        self.host = host
        self.history = history
        self.disk = history.disk
        self.cfg: MqttConfig = config().mqtt
        c = self.cfg
        self.outbox = Outbox(
            config().events.state_path() / "mqtt-outbox.db", c.queue_max_events, c.queue_max_bytes
        )
        self.opened = False
        self.topics = self._topics(c)
        self.live: deque[Message] = deque(maxlen=LIVE_MAX)
        self.live_dropped = 0
        self._incoming: list[Message] = []
        self._stored = asyncio.Event()
        self._rates: dict[str, SourceRate] = {}
        self.sources: dict[str, float] = {}  # every source seen -> when last seen (wall clock)
        self.streaming: set[str] = set()  # sources connected now
        self._seen: dict[str, float] = {}
        self._forgotten: set[str] = set()
        self.wakeup = asyncio.Event()
        self.reconnect = asyncio.Event()
        self.rediscover = False
        self.stopping = False
        self.connected = False
        self.connects = 0
        self.published = 0
        self.last_error: str | None = None

    def _topics(self, cfg: MqttConfig) -> Topics:
        return Topics(cfg.topic_prefix or f"edge-agent/{self.host.agent_id}")

    def open(self) -> None:
        """Open the outbox and load the sources seen before (worker thread)."""
        self.outbox.open()
        self.sources = self.outbox.sources()
        self.opened = True

    # -- the hub sink (on the loop, never blocks) -----------------------------------------------------------
    def sink(self, event: Event) -> None:
        """Hub sink: hazards are queued for the disk, detections are rate-capped into the live queue."""
        if not self.cfg.enabled:
            return
        payload = event.payload
        if isinstance(payload, DetectionsEvent):
            self._detections(payload)
        elif isinstance(payload, HazardEvent):
            self._store(self._hazard_messages(payload))
        elif isinstance(payload, SourceEvent):
            self._source_seen(payload.source_id, payload.state == "connected")

    def _detections(self, ev: DetectionsEvent) -> None:
        now = time.monotonic()
        rate = self._rates.get(ev.source_id)
        if rate is None:
            rate = self._rates[ev.source_id] = SourceRate(now - self.cfg.detections_interval)
            if len(self._rates) > 4096:  # peers choose source ids: keep the table bounded
                self._rates.pop(next(iter(self._rates)))
        rate.add(ev.result.timings.total)
        if now - rate.last < self.cfg.detections_interval:
            return
        self._live(Message(self.topics.detections(ev.source_id), detections_payload(ev)))
        stats = compact(rate.take(now))
        if ev.source_id in self.sources:
            self._live(Message(self.topics.stats(ev.source_id), stats, retain=True))

    def _live(self, message: Message) -> None:
        if len(self.live) == self.live.maxlen:
            self.live_dropped += 1
        self.live.append(message)
        self.wakeup.set()

    def _hazard_messages(self, ev: HazardEvent) -> list[Message]:
        keep_snapshot = ev.snapshot is not None and self.history.cfg.snapshots
        snapshot = ev.snapshot if keep_snapshot else None
        topics = self.topics
        messages = [Message(topics.events, compact(event_row(ev, snapshot)))]
        if ev.source_id not in self.sources:
            return messages  # untracked: no retained state
        messages.append(
            Message(topics.hazard(ev.source_id, ev.rule), b"ON" if ev.state == "started" else b"OFF", True)
        )
        if snapshot is not None and self.cfg.snapshots:
            messages.append(Message(topics.snapshot(ev.source_id), b"", True, snapshot))
        return messages

    def _source_seen(self, source: str, connected: bool) -> None:
        if connected:
            self.streaming.add(source)
        else:
            self.streaming.discard(source)
        new = source not in self.sources
        if new and (len(self.sources) >= MAX_SOURCES or re.fullmatch(self.cfg.untracked_sources, source)):
            return
        self.sources[source] = self._seen[source] = time.time()
        self._forgotten.discard(source)
        self._stored.set()  # persist when it was seen
        if not new:
            return
        # The first OFF goes through the outbox, so it can never overtake a later ON.
        rules = [r.name for r in self.config().hazards]
        self._store([Message(self.topics.hazard(source, r), b"OFF", True) for r in rules])
        self.rediscover = True  # its entities, announced by the publisher
        self.wakeup.set()

    def expire(self, now: float) -> None:
        """Forget sources gone for longer than forget_sources_after: entities and retained topics removed."""
        after = self.cfg.forget_sources_after
        if after <= 0:
            return
        gone = [
            (s, seen) for s, seen in self.sources.items() if s not in self.streaming and now - seen > after
        ]
        for source, seen in gone:
            self.forget(source, f"not seen for {now - seen:.0f}s")

    def forget(self, source: str, why: str) -> None:
        """Remove a source's entities and retained topics (an empty retained message clears each)."""
        if source not in self.sources:
            return
        del self.sources[source]
        self._seen.pop(source, None)
        self._forgotten.add(source)
        t = self.topics
        topics = [t.hazard(source, r.name) for r in self.config().hazards] + [
            t.stats(source),
            t.snapshot(source),
        ]
        self._store([Message(topic, b"", True) for topic in topics])
        self.rediscover = True
        self.wakeup.set()
        log.info("MQTT: forgot source %s (%s)", source, why)

    def _store(self, messages: list[Message]) -> None:
        self._incoming.extend(messages)
        over = len(self._incoming) - self.cfg.queue_max_events
        if over > 0:  # the disk is not keeping up (or the outbox could not be opened): same bound as on disk
            del self._incoming[:over]
            self.outbox.dropped += over
        self._stored.set()

    # -- the outbox writer ----------------------------------------------------------------------------------
    async def run_writer(self) -> None:
        """Store queued messages on disk, in order, then wake the publisher; until cancelled."""
        while True:
            await self._stored.wait()
            self._stored.clear()
            await self.async_store()

    async def async_store(self) -> None:
        """Store everything queued now."""
        while (self._incoming or self._seen or self._forgotten) and self.opened:
            batch, self._incoming = self._incoming, []
            try:
                dropped = await self.disk.run(self.outbox.put, batch) if batch else 0
                if self._seen or self._forgotten:
                    seen, forgotten = self._seen, self._forgotten
                    self._seen, self._forgotten = {}, set()
                    await self.disk.run(self.outbox.remember_sources, seen, forgotten)
            except sqlite3.Error as exc:
                self.last_error = f"outbox: {exc}"
                log.error("MQTT outbox: cannot store %d messages: %s", len(batch), exc)
                continue
            if dropped:
                log.warning("MQTT outbox full: dropped the %d oldest messages", dropped)
            self.wakeup.set()

    # -- control --------------------------------------------------------------------------------------------
    def reconfigure(self) -> None:
        """After a reload: reconnect when [mqtt] changed, re-announce discovery when the rules did."""
        new = self.config().mqtt
        self.outbox.max_count, self.outbox.max_bytes = new.queue_max_events, new.queue_max_bytes
        if new != self.cfg:
            log.info("MQTT: settings changed; reconnecting")
            self.cfg = new
            self.topics = self._topics(new)
            self.reconnect.set()
        self.rediscover = True
        self.wakeup.set()

    def stop(self) -> None:
        """Ask the publisher to flush, say offline and disconnect."""
        self.stopping = True
        self.reconnect.set()
        self.wakeup.set()


class MqttCollector(Collector):
    """Broker connection, messages published, outbox depth and drops, at scrape time."""

    def __init__(self, service: MqttService) -> None:
        self._svc = service

    def collect(self) -> Iterator[Metric]:
        """The MQTT metrics."""
        s = self._svc
        yield GaugeMetricFamily(
            "edge_agent_mqtt_connected", "1 while connected to the broker.", value=int(s.connected)
        )
        yield CounterMetricFamily(
            "edge_agent_mqtt_connects", "Successful broker connections.", value=s.connects
        )
        yield CounterMetricFamily(
            "edge_agent_mqtt_published", "Messages the broker accepted.", value=s.published
        )
        yield GaugeMetricFamily(
            "edge_agent_mqtt_outbox_messages", "Hazard messages waiting on disk.", value=s.outbox.count
        )
        yield GaugeMetricFamily(
            "edge_agent_mqtt_outbox_bytes", "Bytes waiting on disk.", value=s.outbox.bytes
        )
        yield CounterMetricFamily(
            "edge_agent_mqtt_outbox_dropped",
            "Hazard messages dropped past the outbox bound.",
            value=s.outbox.dropped,
        )
        yield CounterMetricFamily(
            "edge_agent_mqtt_live_dropped",
            "Detection summaries dropped while disconnected.",
            value=s.live_dropped,
        )
