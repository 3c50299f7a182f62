"""MQTT figures on a real agent process and a real Mosquitto: publish latency (hazard start -> subscriber),
agent CPU with MQTT off and on at N sources, and store-and-forward over a broker outage.

    .venv/bin/python tests/perf/bench_mqtt.py [--sources 4] [--seconds 20] [--outage 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.support.agent import AgentProcess, write_config
from tests.support.mosquitto import Broker, Subscriber

RULE = {"name": "person", "classes": ["person"], "min_confidence": 0.5, "min_frames": 1, "clear_frames": 1}


def photos() -> dict[str, bytes]:
    import importlib.util

    import numpy as np
    import simplejpeg
    from skimage import data

    spec = importlib.util.find_spec("ultralytics")
    assert spec and spec.submodule_search_locations
    bus = (Path(next(iter(spec.submodule_search_locations))) / "assets" / "bus.jpg").read_bytes()
    chelsea = data.chelsea()  # type: ignore[no-untyped-call]
    cat = bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(chelsea), quality=90, colorspace="RGB"))
    return {"bus": bus, "cat": cat}


def config(d: Path, cache: Path, broker: Broker, mqtt: bool) -> Path:
    cfg = write_config(
        d / ("on.toml" if mqtt else "off.toml"),
        cache,
        streaming={"max_fps": 240.0, "max_sessions": 16, "target_latency_ms": 60000.0},  # no adaptive drops
        mqtt={"enabled": mqtt, "host": "127.0.0.1", "port": broker.port, "reconnect_max": 0.5},
        events={"state_dir": str(d / ("state-on" if mqtt else "state-off"))},
    )
    cfg.write_text(
        cfg.read_text() + "[[hazards]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in RULE.items())
    )
    return cfg


kinds: dict[str, int] = {}


async def _source(port: int, shots: dict[str, bytes], name: str, until: float, counts: list[int]) -> None:
    url = f"http://127.0.0.1:{port}/stream/detection?client_id={name}"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.receive_json()
        await ws.send_json({"type": "config", "fps_limit": 240})
        await ws.receive_json()
        i = 0
        while time.monotonic() < until:
            await ws.send_bytes(shots["bus" if i % 2 == 0 else "cat"])
            while (kind := (await ws.receive_json())["type"]) not in ("detections", "dropped", "error"):
                pass
            i += kind == "detections"
            kinds[kind] = kinds.get(kind, 0) + 1
        counts.append(i)


def stream(
    agent: AgentProcess, shots: dict[str, bytes], sources: int, seconds: float
) -> tuple[int, float, float]:
    """Frames sent, agent CPU seconds and wall seconds while `sources` clients stream alternating photos."""
    proc = psutil.Process(agent.proc.pid)
    children = proc.children(recursive=True)
    cpu0 = sum(p.cpu_times().user + p.cpu_times().system for p in [proc, *children])
    t0 = time.monotonic()
    counts: list[int] = []

    async def run() -> None:
        assert agent.port is not None
        until = time.monotonic() + seconds
        await asyncio.gather(*(_source(agent.port, shots, f"cam-{i}", until, counts) for i in range(sources)))

    asyncio.run(run())
    cpu = sum(p.cpu_times().user + p.cpu_times().system for p in [proc, *children]) - cpu0
    return sum(counts), cpu, time.monotonic() - t0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sources", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--outage", type=float, default=10.0)
    args = ap.parse_args(argv)
    shots = photos()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cache = d / "cache"
        broker = Broker(d / "broker")
        sub = Subscriber(broker, topic="edge-agent/+/events", persistent=True, qos=1)
        try:
            for mqtt in (False, True):
                agent = AgentProcess(config(d, cache, broker, mqtt))
                try:
                    agent.wait_listening()
                    stream(agent, shots, 1, 2.0)  # warm-up
                    before = len(sub.messages)
                    kinds.clear()
                    frames, cpu, wall = stream(agent, shots, args.sources, args.seconds)
                    print(
                        f"mqtt {'on ' if mqtt else 'off'}: {args.sources} sources, {frames} frames in {wall:.1f}s "
                        f"({frames / wall:.1f} fps), agent CPU {cpu:.2f}s = {100 * cpu / wall:.0f}% of one core, "
                        f"{1000 * cpu / max(frames, 1):.2f} ms/frame; replies {kinds}"
                    )
                    if mqtt:
                        time.sleep(2.0)  # let the last events arrive before counting
                        got = [json.loads(m.payload) | {"at": m.at} for m in sub.messages[before:]]
                        lat = [1000 * (e["at"] - e["time"]) for e in got if e["state"] == "started"]
                        print(
                            f"publish latency hazard start -> subscriber: n={len(lat)} p50 {pct(lat, 50):.1f} ms "
                            f"p99 {pct(lat, 99):.1f} ms max {max(lat):.1f} ms; {len(got)} events received"
                        )
                        outage(agent, broker, sub, shots, args)
                finally:
                    agent.signal(__import__("signal").SIGTERM)
                    agent.wait_exit(30)
        finally:
            sub.close()
            broker.stop()
    return 0


def outage(agent: AgentProcess, broker: Broker, sub: Subscriber, shots: dict[str, bytes], args: Any) -> None:
    """Stream through a broker outage; every event must arrive once, in order, after it returns."""
    time.sleep(1.0)
    _, body = agent.get("/v1/events?limit=1")
    last_seq = body["events"][0]["seq"] if body["events"] else 0
    before = len(sub.messages)
    broker.stop()
    stream(agent, shots, args.sources, args.outage)
    _, health = agent.get("/healthz")
    buffered = health["checks"]["mqtt:broker"][0]["observedValue"]
    bytes_ = health["checks"]["mqtt:broker"][0]["outboxBytes"]
    broker.start()
    back = time.monotonic()
    happened: list[dict[str, Any]] = []
    cursor = None
    while True:  # the agent's own record of what happened during the outage, oldest first
        q = "/v1/events?limit=200" + (f"&before={cursor}" if cursor else "")
        page = agent.get(q)[1]
        happened += [e for e in page["events"] if e["seq"] > last_seq]
        cursor = page["next"]
        if cursor is None or page["events"][-1]["seq"] <= last_seq:
            break
    happened.sort(key=lambda e: e["seq"])
    sub.wait(lambda ms: len({json.loads(m.payload)["id"] for m in ms[before:]}) >= len(happened), 120)
    took = time.monotonic() - back
    got = [json.loads(m.payload)["id"] for m in sub.messages[before:]]
    unique = list(dict.fromkeys(got))
    print(
        f"store-and-forward: {args.outage:.0f}s outage, {len(happened)} events ({buffered} messages, "
        f"{bytes_ / 1e3:.0f} kB; snapshots are read from their directory at send time) buffered, all delivered {took:.2f}s after the broker came back; "
        f"in order: {unique == [e['id'] for e in happened]}; duplicates (QoS 1): {len(got) - len(unique)}"
    )


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
