"""MQTT against a real Mosquitto: hazards, retained state, snapshots, HA discovery, store-and-forward, last will."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simplejpeg

from edge_agent.events.mqtt import MQTT
from tests.support.agent import AgentProcess, agent_cache, write_config
from tests.support.hazard_frames import hazard_cycles
from tests.support.mosquitto import Broker, Certs, Received, Subscriber
from tests.support.streams import Serve, eventually, ov_cache, serve

__all__ = ["agent_cache", "ov_cache", "serve"]

USER = ("agent", "s3cret-pw")
HEX16 = re.compile(r"[0-9a-f]{16}")
# Home Assistant's MQTT discovery schema: what each platform cannot do without.
HA_REQUIRED = {"binary_sensor": {"state_topic"}, "sensor": {"state_topic"}, "image": {"image_topic"}}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker", user=USER)
    yield b
    b.stop()


def mqtt_overrides(broker: Broker, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    pw = tmp_path / "mqtt-password"
    pw.write_text(USER[1] + "\n")
    return {
        "streaming__max_fps": 240.0,
        "mqtt__enabled": True,
        "mqtt__host": "127.0.0.1",
        "mqtt__port": broker.port,
        "mqtt__username": USER[0],
        "mqtt__password_file": str(pw),
        "mqtt__reconnect_max": 0.5,
        **extra,
    }


def events_of(messages: list[Received], prefix: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages if m.topic == f"{prefix}/events"]


def red_fraction(pixels: np.ndarray) -> float:
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    return float(((r > 200) & (g < 90) & (b < 90)).mean())


def check_discovery(messages: list[Received], prefix: str) -> dict[str, dict[str, Any]]:
    """Every discovery config has what HA requires, unique ids, one device, and state topics that exist."""
    published = {m.topic for m in messages if m.payload}
    configs = {
        m.topic: json.loads(m.payload) for m in messages if m.topic.startswith("homeassistant/") and m.payload
    }
    assert configs, "no discovery configs"
    assert all(m.retain for m in messages if m.topic.startswith("homeassistant/"))
    ids = [c["unique_id"] for c in configs.values()]
    assert len(ids) == len(set(ids))
    devices = {json.dumps(c["device"], sort_keys=True) for c in configs.values()}
    assert len(devices) == 1
    device = json.loads(devices.pop())
    assert device["identifiers"] and device["name"] and device["sw_version"] and device["model"]
    assert device["configuration_url"].startswith("http://")
    for topic, cfg in configs.items():
        component = topic.split("/")[1]
        assert HA_REQUIRED[component] <= cfg.keys(), (topic, cfg)
        assert cfg["availability_topic"] == f"{prefix}/availability"
        for key in ("state_topic", "image_topic"):
            if key in cfg:
                assert cfg[key] in published, f"{topic}: {key} {cfg[key]} never published"
    return configs


async def test_hazards_state_snapshots_and_discovery(
    serve: Serve, broker: Broker, photos: dict[str, bytes], tmp_path: Path
) -> None:
    sub = Subscriber(broker, user=USER)
    try:
        client = await serve(**mqtt_overrides(broker, tmp_path, mqtt__detections_interval=0.2))
        prefix = client.app[MQTT].topics.prefix
        await sub.until(
            lambda ms: any(m.topic == f"{prefix}/availability" and m.payload == b"online" for m in ms)
        )
        await hazard_cycles(client, photos, 1, "cam-1")
        msgs = await sub.until(
            lambda ms: len(events_of(ms, prefix)) == 2 and any(m.topic.endswith("/snapshot") for m in ms)
        )
        started, ended = events_of(msgs, prefix)
        assert (started["state"], ended["state"]) == ("started", "ended")
        assert started["source"] == "cam-1" and started["rule"] == "person" and HEX16.fullmatch(started["id"])
        assert started["snapshot"] == started["id"] and ended["snapshot"] is None
        assert started["detections"] and {d["label"] for d in started["detections"]} == {"person"}
        assert started["image_size"] == [810, 1080]
        # Retained ON/OFF: the first OFF when the source appeared, ON at the start, OFF at the end.
        state_topic = f"{prefix}/cam-1/hazard/person"
        await sub.until(lambda ms: len([m for m in ms if m.topic == state_topic]) == 3)
        state = sub.on(state_topic)
        assert [m.payload for m in state] == [b"OFF", b"ON", b"OFF"]
        snap = sub.on(f"{prefix}/cam-1/snapshot")[-1].payload
        pixels = simplejpeg.decode_jpeg(snap, colorspace="RGB")
        assert pixels.shape == (1080, 810, 3)
        # Boxes are drawn exactly where the detections are: red along each box's top edge, not in the bus photo.
        assert red_fraction(simplejpeg.decode_jpeg(photos["bus"], colorspace="RGB")) < 0.001
        for det in started["detections"]:
            x1, y1, x2, _ = (int(v) for v in det["box"])
            edge = pixels[max(y1, 0) + 1 : max(y1, 0) + 3, x1 + 5 : x2 - 5]
            assert red_fraction(edge) > 0.5, det
        detections = [json.loads(m.payload) for m in sub.on(f"{prefix}/cam-1/detections")]
        assert any(d["counts"].get("person", 0) >= 2 for d in detections)
        stats = await sub.until(lambda ms: any(m.topic == f"{prefix}/cam-1/stats" for m in ms))
        assert json.loads([m for m in stats if m.topic == f"{prefix}/cam-1/stats"][-1].payload)["fps"] > 0
        await sub.until(lambda ms: any(m.topic == f"{prefix}/health" for m in ms))

        # The agent's own record: the same two events, newest first, and the same snapshot bytes.
        resp = await client.get("/v1/events?source=cam-1&rule=person")
        listed = (await resp.json())["events"]
        assert [e["id"] for e in listed] == [ended["id"], started["id"]]
        resp = await client.get(f"/v1/events/{started['id']}/snapshot.jpg")
        assert resp.status == 200 and resp.content_type == "image/jpeg" and await resp.read() == snap
        health = await (await client.get("/healthz")).json()
        assert health["checks"]["mqtt:broker"][0]["status"] == "pass"
        metrics = await (await client.get("/metrics")).text()
        assert "edge_agent_mqtt_connected 1.0" in metrics

        # A subscriber arriving later gets the retained state: online, OFF, the snapshot, discovery.
        late = Subscriber(broker, user=USER)
        try:
            # 5 configs: agent health; the person hazard, fps, latency and the snapshot image of cam-1.
            got = await late.until(
                lambda ms: (
                    any(m.topic == f"{prefix}/cam-1/snapshot" for m in ms)
                    and len([m for m in ms if m.topic.startswith("homeassistant/")]) == 5
                )
            )
            retained = {m.topic: m.payload for m in got if m.retain}
            assert retained[f"{prefix}/availability"] == b"online"
            assert retained[f"{prefix}/cam-1/hazard/person"] == b"OFF"
            assert retained[f"{prefix}/cam-1/snapshot"] == snap
            # Discovery, as Home Assistant finds it on subscribing: retained configs.
            configs = check_discovery([m for m in got if m.retain], prefix)
            assert any(c.get("state_topic") == state_topic for c in configs.values())
            assert {t.split("/")[1] for t in configs} == {"binary_sensor", "sensor", "image"}
        finally:
            late.close()
    finally:
        sub.close()


async def test_store_and_forward_while_the_broker_is_down(
    serve: Serve, tmp_path: Path, photos: dict[str, bytes]
) -> None:
    broker = Broker(tmp_path / "broker")
    # QoS 2 both ways and a persistent session: MQTT's exactly-once, across the broker's restart too.
    sub = Subscriber(broker, topic="edge-agent/+/events", persistent=True, qos=2)
    try:
        client = await serve(
            **{
                **mqtt_overrides(broker, tmp_path),
                "mqtt__username": None,
                "mqtt__password_file": None,
                "mqtt__qos": 2,
            }
        )
        svc = client.app[MQTT]
        prefix = svc.topics.prefix
        await hazard_cycles(client, photos, 1, "cam-a")
        await sub.until(lambda ms: len(events_of(ms, prefix)) == 2)
        broker.stop()
        await hazard_cycles(client, photos, 3, "cam-a")
        await hazard_cycles(client, photos, 1, "cam-b")
        health = await (await client.get("/healthz")).json()
        check = health["checks"]["mqtt:broker"][0]
        assert check["status"] == "warn" and not check["connected"] and check["observedValue"] >= 8
        broker.start()
        listed = (await (await client.get("/v1/events?limit=200")).json())["events"]
        msgs = await sub.until(lambda ms: len(events_of(ms, prefix)) >= 10, timeout=30)
        delivered = events_of(msgs, prefix)
        # Exactly the events that happened, each once, in the order they happened.
        assert [(e["id"], e["state"]) for e in delivered] == [(e["id"], e["state"]) for e in reversed(listed)]
        assert [e["state"] for e in delivered] == ["started", "ended"] * 5
        await eventually(lambda: svc.outbox.count == 0)  # the retained state and snapshots after the events
        assert svc.outbox.dropped == 0
    finally:
        sub.close()
        broker.stop()


def test_tls_client_certificate_and_last_will(tmp_path: Path, agent_cache: Path) -> None:
    certs = Certs.make(tmp_path / "certs")
    broker = Broker(tmp_path / "broker", certs=certs)
    sub = Subscriber(broker, certs=certs)
    cfg = write_config(
        tmp_path / "agent.toml",
        agent_cache,
        mqtt={
            "enabled": True,
            "host": "127.0.0.1",
            "port": broker.port,
            "tls": True,
            "tls_ca_file": str(certs.ca),
            "tls_cert_file": str(certs.client_cert),
            "tls_key_file": str(certs.client_key),
            "topic_prefix": "site/box-1",
        },
    )
    agent = AgentProcess(cfg)
    try:
        agent.wait_listening()
        sub.wait(
            lambda ms: any(m.topic == "site/box-1/availability" and m.payload == b"online" for m in ms), 60
        )
        agent.signal(signal.SIGKILL)
        agent.wait_exit(10)
        # The broker itself publishes the will once the connection is gone.
        sub.wait(
            lambda ms: [m.payload for m in ms if m.topic == "site/box-1/availability"][-1:] == [b"offline"]
        )
    finally:
        agent.kill()
        sub.close()
        broker.stop()


async def test_a_source_gone_past_forget_sources_after_loses_its_entities(
    serve: Serve, broker: Broker, photos: dict[str, bytes], tmp_path: Path
) -> None:
    sub = Subscriber(broker, user=USER)
    try:
        client = await serve(**mqtt_overrides(broker, tmp_path, mqtt__forget_sources_after=1.0))
        prefix = client.app[MQTT].topics.prefix
        await hazard_cycles(client, photos, 1, "cam-gone")  # connects, starts and ends a hazard, disconnects
        configs = await sub.until(
            lambda ms: (
                len([m for m in ms if "cam-gone" in m.topic and m.topic.startswith("homeassistant/")]) == 4
            )
        )
        entity_topics = {
            m.topic for m in configs if "cam-gone" in m.topic and m.topic.startswith("homeassistant/")
        }
        retained = {
            f"{prefix}/cam-gone/hazard/person",
            f"{prefix}/cam-gone/stats",
            f"{prefix}/cam-gone/snapshot",
        }

        def cleared(ms: list[Received]) -> bool:
            empty = {m.topic for m in ms if m.payload == b""}
            return entity_topics | retained <= empty

        await sub.until(cleared, timeout=15)
        assert "cam-gone" not in client.app[MQTT].sources
        # A client without a client_id (server-made id): its events, but no entities and nothing retained.
        await hazard_cycles(client, photos, 1, "client-0123abcd")
        got = await sub.until(
            lambda ms: len([e for e in events_of(ms, prefix) if e["source"] == "client-0123abcd"]) == 2
        )
        assert not [
            m.topic for m in got if "client-0123abcd" in m.topic and not m.topic.endswith("/detections")
        ]
        # Nothing of it is left retained for Home Assistant to find.
        late = Subscriber(broker, user=USER)
        try:
            got = await late.until(lambda ms: any(m.topic == f"{prefix}/availability" for m in ms))
            assert not [m.topic for m in got if "cam-gone" in m.topic]
        finally:
            late.close()
    finally:
        sub.close()


async def test_a_forgotten_source_loses_its_entities_at_once(
    serve: Serve, broker: Broker, photos: dict[str, bytes], tmp_path: Path
) -> None:
    # What a reload does for a camera removed from [[cameras]] (appliance/reload.py): forget it now.
    sub = Subscriber(broker, user=USER)
    try:
        client = await serve(**mqtt_overrides(broker, tmp_path))
        service = client.app[MQTT]
        await hazard_cycles(client, photos, 1, "cam-removed")
        configs = await sub.until(
            lambda ms: (
                len([m for m in ms if "cam-removed" in m.topic and m.topic.startswith("homeassistant/")]) == 4
            )
        )
        entity_topics = {
            m.topic for m in configs if "cam-removed" in m.topic and m.topic.startswith("homeassistant/")
        }
        service.forget("cam-removed", "camera removed by reload")
        service.forget("never-seen", "camera removed by reload")  # nothing to clear, nothing sent
        await sub.until(lambda ms: entity_topics <= {m.topic for m in ms if m.payload == b""}, timeout=15)
        assert "cam-removed" not in service.sources
    finally:
        sub.close()
