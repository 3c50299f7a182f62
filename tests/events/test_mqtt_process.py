"""MQTT of a real `edge-agent serve` process: SIGHUP reconnects with new settings and removes a rule's
entities; store-and-forward across a long broker outage and an agent restart."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.agent import AgentProcess, agent_cache, write_config
from tests.support.mosquitto import Broker, Received, Subscriber

__all__ = ["agent_cache"]

RULES = [
    {"name": "person", "classes": ["person"], "min_confidence": 0.5, "min_frames": 1, "clear_frames": 1},
    {"name": "cup", "classes": ["cup"], "min_confidence": 0.3, "min_frames": 1, "clear_frames": 1},
]


def agent_config(path: Path, cache: Path, broker: Broker, rules: list[dict[str, Any]], **mqtt: Any) -> Path:
    cfg = write_config(
        path,
        cache,
        streaming={"max_fps": 240.0},
        mqtt={
            "enabled": True,
            "host": "127.0.0.1",
            "port": broker.port,
            "reconnect_max": 0.5,
            "qos": 2,
            **mqtt,
        },
    )
    tables = []
    for rule in rules:
        tables.append("[[hazards]]")
        tables.extend(f"{k} = {json.dumps(v)}" for k, v in rule.items())
    cfg.write_text(cfg.read_text() + "\n".join(tables) + "\n")
    return cfg


async def _cycles(port: int, photos: dict[str, bytes], cycles: int, source: str) -> None:
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{port}/stream/detection?client_id={source}"
        async with session.ws_connect(url) as ws:
            await ws.receive_json()
            await ws.send_json({"type": "config", "fps_limit": 240})
            while (await ws.receive_json())["type"] != "config":
                pass  # the fps message the new limit also sends
            for _ in range(cycles):
                for name in ("bus", "chelsea"):  # people start the person rule; the cat photo ends it
                    while True:
                        await ws.send_bytes(photos[name])
                        reply = await ws.receive_json()
                        while reply["type"] == "fps":  # control messages are not frame replies
                            reply = await ws.receive_json()
                        if reply["type"] == "detections":
                            break


def cycles(agent: AgentProcess, photos: dict[str, bytes], n: int, source: str = "cam-1") -> None:
    """n person-rule starts and ends at a source of the agent (min_frames = clear_frames = 1)."""
    assert agent.port is not None
    asyncio.run(_cycles(agent.port, photos, n, source))


def events(messages: list[Received], prefix: str) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages if m.topic == f"{prefix}/events"]


def history(agent: AgentProcess) -> list[dict[str, Any]]:
    status, body = agent.get("/v1/events?limit=200")
    assert status == 200
    return list(reversed(body["events"]))


def wait_outbox_empty(agent: AgentProcess, timeout: float = 20.0) -> None:
    """Until /healthz says no hazard message waits for the broker."""
    deadline = time.monotonic() + timeout
    while True:
        _, doc = agent.get("/healthz")
        check = doc["checks"]["mqtt:broker"][0]
        if check["observedValue"] == 0 and check["connected"]:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"outbox not empty: {check}")
        time.sleep(0.05)


def test_sighup_reconnects_with_new_settings_and_removes_a_rules_entities(
    tmp_path: Path, agent_cache: Path, photos: dict[str, bytes]
) -> None:
    broker = Broker(tmp_path / "broker")
    sub = Subscriber(broker)
    cfg = agent_config(tmp_path / "agent.toml", agent_cache, broker, RULES, topic_prefix="site/a")
    agent = AgentProcess(cfg)
    try:
        agent.wait_listening()
        sub.wait(lambda ms: any(m.topic == "site/a/availability" and m.payload == b"online" for m in ms), 60)
        cycles(agent, photos, 1)
        cup = [m.topic for m in sub.wait(lambda ms: any("cam-1_cup_hazard" in m.topic for m in ms))]
        cup_config = next(t for t in cup if "cam-1_cup_hazard" in t)
        agent_config(cfg, agent_cache, broker, RULES[:1], topic_prefix="site/b")
        agent.signal(signal.SIGHUP)
        got = sub.wait(
            lambda ms: (
                any(m.topic == "site/b/availability" and m.payload == b"online" for m in ms)
                and any(m.topic == cup_config and m.payload == b"" for m in ms)
            )
        )
        assert [m.payload for m in got if m.topic == "site/a/availability"][-1] == b"offline"
        # The person rule's entity now points at the new prefix.
        person = [json.loads(m.payload) for m in got if "cam-1_person_hazard" in m.topic and m.payload]
        assert person[-1]["state_topic"] == "site/b/cam-1/hazard/person"
        assert agent.get("/readyz")[0] == 200
    finally:
        agent.kill()
        sub.close()
        broker.stop()


@pytest.mark.slow
def test_store_and_forward_over_a_30s_outage_and_an_agent_restart(
    tmp_path: Path, agent_cache: Path, photos: dict[str, bytes]
) -> None:
    broker = Broker(tmp_path / "broker")
    sub = Subscriber(broker, topic="site/a/events", persistent=True, qos=2)
    cfg = agent_config(tmp_path / "agent.toml", agent_cache, broker, RULES[:1], topic_prefix="site/a")
    agent = AgentProcess(cfg)
    try:
        agent.wait_listening()
        cycles(agent, photos, 1)
        sub.wait(lambda ms: len(events(ms, "site/a")) == 2, 30)
        wait_outbox_empty(agent)
        broker.stop()
        down = time.monotonic()
        cycles(agent, photos, 2, "cam-1")
        cycles(agent, photos, 1, "cam-2")
        agent.signal(signal.SIGTERM)
        assert agent.wait_exit(30) == 0
        agent = AgentProcess(cfg)  # same state directory: the outbox is still there
        agent.wait_listening()
        cycles(agent, photos, 1, "cam-1")
        _, doc = agent.get("/healthz")
        buffered = doc["checks"]["mqtt:broker"][0]["observedValue"]
        time.sleep(max(0.0, 30.0 - (time.monotonic() - down)))  # the outage itself is what is tested
        broker.start()
        back = time.monotonic()
        got = sub.wait(lambda ms: len(events(ms, "site/a")) >= 10, 60)
        delivered = events(got, "site/a")
        took = time.monotonic() - back
        expected = history(agent)
        assert [(e["id"], e["state"]) for e in delivered] == [(e["id"], e["state"]) for e in expected]
        assert len(delivered) == 10
        wait_outbox_empty(agent)
        print(
            f"store-and-forward: {buffered} messages buffered over {back - down:.1f}s down, "
            f"{len(delivered) - 2} events delivered in order {took:.2f}s after the broker came back"
        )
    finally:
        agent.kill()
        sub.close()
        broker.stop()
