"""The broker connection: connect with a last will, announce, drain the outbox in order, reconnect with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import ssl
import time
from typing import Any

import aiomqtt

from ... import __version__
from ...config.events import MqttConfig
from . import discovery
from .outbox import Message
from .service import MqttService

log = logging.getLogger(__name__)

MIN_BACKOFF = 0.25
PUBLISH_TIMEOUT = 10.0
FLUSH_ON_STOP = 2.0
HEALTH_POLL = 1.0
BATCH = 64


def tls_context(cfg: MqttConfig) -> ssl.SSLContext | None:
    """A client TLS context verifying the broker (blocking file reads: call off the loop)."""
    if not cfg.tls:
        return None
    ctx = ssl.create_default_context(cafile=cfg.tls_ca_file)
    if cfg.tls_cert_file and cfg.tls_key_file:
        ctx.load_cert_chain(cfg.tls_cert_file, cfg.tls_key_file)
    return ctx


def _signature(doc: dict[str, Any]) -> tuple[Any, ...]:
    """What counts as a health change: the overall status and each check's status."""
    checks = doc.get("checks", {})
    return (doc.get("status"), tuple(sorted((k, v[0].get("status")) for k, v in checks.items() if v)))


class Publisher:
    """One task: the connection loop of an MqttService."""

    def __init__(self, service: MqttService) -> None:
        self.svc = service
        self._cursor = 0
        self._health_at = 0.0
        self._health_sig: tuple[Any, ...] | None = None
        self._availability = service.topics.availability
        self._health_checked = 0.0

    async def run(self) -> None:
        """Stay connected while enabled; back off (0.25 s doubling to reconnect_max) after failures."""
        svc = self.svc
        backoff = MIN_BACKOFF
        while not svc.stopping:
            svc.reconnect.clear()
            cfg = svc.cfg
            if not cfg.enabled:
                await svc.reconnect.wait()
                continue
            try:
                if not svc.opened:
                    await svc.disk.run(svc.open)
                await self._session(cfg)
                backoff = MIN_BACKOFF
            except (aiomqtt.MqttError, OSError, ssl.SSLError, sqlite3.Error) as exc:
                self._report(cfg, exc)
            finally:
                svc.connected = False
            if svc.stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(svc.reconnect.wait(), backoff)
            backoff = min(backoff * 2, cfg.reconnect_max)

    def _report(self, cfg: MqttConfig, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text != self.svc.last_error:
            log.warning("MQTT: broker %s:%d: %s; retrying", cfg.host, cfg.port, text)
        self.svc.last_error = text

    async def _client(self, cfg: MqttConfig) -> aiomqtt.Client:
        svc = self.svc
        password = await svc.disk.run(cfg.password)
        ctx = await svc.disk.run(tls_context, cfg)
        will = aiomqtt.Will(svc.topics.availability, b"offline", qos=cfg.qos, retain=True)
        return aiomqtt.Client(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=password,
            identifier=cfg.client_id or f"edge-agent-{svc.host.agent_id}",
            will=will,
            keepalive=cfg.keepalive,
            tls_context=ctx,
            timeout=PUBLISH_TIMEOUT,
            clean_session=True,
        )

    async def _session(self, cfg: MqttConfig) -> None:
        svc = self.svc
        async with await self._client(cfg) as client:
            svc.connected, svc.last_error = True, None
            svc.connects += 1
            log.info("MQTT: connected to %s:%d as %s", cfg.host, cfg.port, svc.topics.prefix)
            self._cursor = 0
            self._availability = svc.topics.availability
            await self._send(client, Message(self._availability, b"online", True))
            await self._announce(client, cfg)
            watch = asyncio.create_task(self._watch(client))
            pump = asyncio.create_task(self._pump(client))
            try:
                done, _ = await asyncio.wait({watch, pump}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (watch, pump):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                        await task
            for task in done:
                task.result()

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        """Ends with MqttError when the connection drops (aiomqtt reports it through the message iterator)."""
        async for _ in client.messages:
            pass

    async def _send(self, client: aiomqtt.Client, m: Message) -> None:
        await client.publish(
            m.topic, m.payload, qos=self.svc.cfg.qos, retain=m.retain, timeout=PUBLISH_TIMEOUT
        )
        self.svc.published += 1

    async def _announce(self, client: aiomqtt.Client, cfg: MqttConfig) -> None:
        """Publish discovery configs for every known source and rule; empty configs remove what is gone."""
        svc = self.svc
        svc.rediscover = False
        wanted: dict[str, bytes] = {}
        if cfg.discovery:
            device = svc.host.device()
            rules = [r.name for r in svc.config().hazards]
            configs = discovery.agent_configs(device, svc.topics, cfg.discovery_prefix)
            for source in sorted(svc.sources):
                configs.update(
                    discovery.source_configs(device, svc.topics, cfg.discovery_prefix, source, rules)
                )
            wanted = discovery.encode(configs)
        before = await svc.disk.run(svc.outbox.discovered)
        for topic in sorted(before - wanted.keys()):
            await self._send(client, Message(topic, b"", True))
        for topic, payload in wanted.items():
            await self._send(client, Message(topic, payload, True))
        await svc.disk.run(svc.outbox.remember_discovery, set(wanted), before - wanted.keys())
        self._health_at = self._health_checked = 0.0

    async def _pump(self, client: aiomqtt.Client) -> None:
        svc = self.svc
        while True:
            svc.wakeup.clear()
            if svc.stopping:
                await self._goodbye(client)
                return
            await self._drain_outbox(client)
            while svc.live:
                await self._send(client, svc.live.popleft())
            await self._health(client)
            if svc.rediscover:
                await self._announce(client, svc.cfg)
            if svc.reconnect.is_set():  # new settings: offline under the prefix this connection announced
                await self._send(client, Message(self._availability, b"offline", True))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(svc.wakeup.wait(), HEALTH_POLL)

    async def _drain_outbox(self, client: aiomqtt.Client) -> None:
        """Publish stored messages oldest first; each is removed from disk only once the broker acknowledged it."""
        svc = self.svc
        while batch := await svc.disk.run(svc.outbox.peek, self._cursor, BATCH):
            for m in batch:
                if m.snapshot is not None:
                    jpeg = await svc.history.async_snapshot(m.snapshot)
                    if jpeg is not None:
                        await self._send(client, Message(m.topic, jpeg, True))
                else:
                    await self._send(client, m)
                await svc.disk.run(svc.outbox.done, m.seq)
                self._cursor = m.seq

    async def _health(self, client: aiomqtt.Client) -> None:
        now = time.monotonic()
        if now - self._health_checked < HEALTH_POLL:  # the document costs ~1 ms: not on every wakeup
            return
        self._health_checked = now
        self.svc.expire(time.time())
        doc = self.svc.host.health()
        sig = _signature(doc)
        if sig != self._health_sig or now - self._health_at >= self.svc.cfg.health_interval:
            self._health_sig, self._health_at = sig, now
            await self._send(client, Message(self.svc.topics.health, json.dumps(doc).encode(), True))

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """Clean stop: deliver what is stored (briefly), then retained offline before disconnecting."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_ON_STOP):
                await self.svc.async_store()
                await self._drain_outbox(client)
        await self._send(client, Message(self._availability, b"offline", True))
        log.info("MQTT: published offline; disconnecting (version %s)", __version__)
