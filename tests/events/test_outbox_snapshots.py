"""Store-and-forward bounds, snapshot drawing and the fleet's file_sd output, on real files and tools."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import simplejpeg

from edge_agent.config import load_config
from edge_agent.errors import ConfigError
from edge_agent.events.mqtt.outbox import Message, Outbox
from edge_agent.events.snapshots import SnapshotDir, draw_boxes
from edge_agent.inference.contract import Detection, PixelFrame
from edge_agent.tools.discover import Agent
from edge_agent.tools.prometheus_sd import targets, write_atomic


def test_outbox_keeps_order_across_reopen_and_drops_oldest_past_bounds(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_count=5, max_bytes=1 << 20)
    box.open()
    box.put([Message("t", f"m{i}".encode()) for i in range(3)])
    box.close()
    again = Outbox(tmp_path / "o.db", max_count=5, max_bytes=1 << 20)
    again.open()  # survives a restart
    assert [m.payload for m in again.peek(0, 10)] == [b"m0", b"m1", b"m2"]
    assert again.put([Message("t", f"m{i}".encode()) for i in range(3, 8)]) == 3
    assert [m.payload for m in again.peek(0, 10)] == [f"m{i}".encode() for i in range(3, 8)]
    assert (again.count, again.dropped) == (5, 3)
    first = again.peek(0, 1)[0]
    again.done(first.seq)
    assert again.count == 4 and again.peek(0, 1)[0].payload == b"m4"
    again.max_bytes = 25  # by bytes: 4 x 2 bytes + one of 20 -> the oldest go first, the newest stays
    again.put([Message("t", b"x" * 20)])
    assert [m.payload for m in again.peek(0, 10)][-1] == b"x" * 20 and again.bytes <= 25
    again.close()
    reopened = Outbox(tmp_path / "o.db", 5, 25)
    reopened.open()
    assert reopened.dropped == again.dropped  # the drop count is kept with the queue


def test_snapshot_boxes_and_bounded_directory(tmp_path: Path) -> None:
    pixels = np.full((120, 200, 3), 40, np.uint8)
    det = Detection("person", 0, 0.9, (20.0, 30.0, 120.0, 100.0))
    drawn = pixels.copy()
    draw_boxes(drawn, [det])
    assert (drawn[30, 20:120] == (255, 32, 32)).all() and (drawn[30:100, 20] == (255, 32, 32)).all()
    assert (drawn[60, 60] == 40).all()  # inside the box untouched
    store = SnapshotDir(tmp_path / "snaps", max_count=2, max_bytes=1 << 20)
    store.open()
    ids = [f"{i:016x}" for i in range(3)]
    for sid in ids:
        store.save(sid, PixelFrame(pixels), [det], 90)
    assert len(store) == 2 and store.read(ids[0]) is None and store.removed == 1
    jpeg = store.read(ids[2])
    assert jpeg is not None
    assert simplejpeg.decode_jpeg(jpeg, colorspace="RGB").shape == (120, 200, 3)
    assert store.read("../../etc/passwd") is None
    reopened = SnapshotDir(tmp_path / "snaps", max_count=1, max_bytes=1 << 20)
    reopened.open()  # an earlier run's files count against the bound
    assert len(reopened) == 1 and reopened.read(ids[2]) is not None


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({("mqtt", "topic_prefix"): "a/#"}, "mqtt.topic_prefix"),
        ({("mqtt", "qos"): 3}, "mqtt.qos"),
        ({("mqtt", "password_file"): "/nonexistent/pw"}, "mqtt.password_file"),
        ({("mqtt", "tls_ca_file"): "/etc/hostname"}, "mqtt"),
    ],
)
def test_mqtt_config_errors_name_the_key(overrides: dict[tuple[str, ...], object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={}, overrides=overrides)
    assert key in str(err.value)


def test_prometheus_file_sd_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: run provisioning/setup-dev.sh --test (Debian package prometheus)")
    agents = [
        Agent("box-b", "b.local", ["10.0.0.2"], 8080, {"id": "bb", "model": "yolov3-tiny", "device": "CPU"}),
        Agent("box-a", "a.local", ["10.0.0.1"], 9000, {"id": "aa", "model": "yolov3-tiny", "device": "GPU"}),
    ]
    sd = tmp_path / "agents.json"
    assert write_atomic(sd, targets(agents)) and not write_atomic(sd, targets(agents))
    groups = json.loads(sd.read_text())
    assert [g["targets"] for g in groups] == [["10.0.0.1:9000"], ["10.0.0.2:8080"]]
    assert groups[0]["labels"] == {
        "agent_id": "aa",
        "agent_name": "box-a",
        "model": "yolov3-tiny",
        "device": "GPU",
        "version": "",
    }
    conf = tmp_path / "prometheus.yml"
    conf.write_text(
        f"scrape_configs:\n  - job_name: edge-agent\n    file_sd_configs:\n      - files: ['{sd}']\n"
    )
    out = subprocess.run(
        [promtool, "check", "config", str(conf)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr
