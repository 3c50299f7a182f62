"""What the operator is told at start and reload (real process, real SIGHUP): hazard rule classes the model
lacks, the seed's clamped queue size; mDNS stays silent when disabled; the seed's performance field names."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.agent import AgentProcess, NotifySocket, agent_cache, write_config

__all__ = ["agent_cache"]


def _with_rule(path: Path, cache: Path, classes: list[str]) -> Path:
    write_config(path, cache)
    quoted = ", ".join(f'"{c}"' for c in classes)
    with path.open("a") as fh:
        fh.write(f'[[hazards]]\nname = "yard"\nclasses = [{quoted}]\n')
    return path


def test_unknown_rule_classes_and_clamped_queue_are_reported_at_start_and_reload(
    tmp_path: Path, agent_cache: Path
) -> None:
    config = _with_rule(tmp_path / "c.toml", agent_cache, ["person", "forklift"])
    notify = NotifySocket(tmp_path)
    agent = AgentProcess(config, env={"NOTIFY_SOCKET": notify.env_value, "STREAMING_QUEUE_SIZE": "25"})
    try:
        notify.wait_for("READY", "1", timeout=90)
        agent.wait_listening(5)
        line = agent.log_contains("hazards.0.classes.1")
        assert "WARNING" in line and "'forklift'" in line and "yolov3-tiny" in line
        clamp = agent.log_contains("streaming.queue_size = 25")
        assert "env STREAMING_QUEUE_SIZE" in clamp and "latest-wins" in clamp
        status, doc = agent.get("/healthz")
        assert status == 200 and any("hazards.0.classes.1" in n for n in doc["notes"]), doc.get("notes")
        assert agent.get("/v1/info")[1]["limits"]["queue_size"] == 8

        _with_rule(config, agent_cache, ["pallet"])
        mark = len(notify.messages)
        agent.signal(signal.SIGHUP)
        notify.wait_for("READY", "1", after=notify.wait_for("RELOADING", "1", after=mark))
        assert "'pallet'" in agent.log_contains("hazards.0.classes.0")
        notes = agent.get("/healthz")[1]["notes"]
        assert any("'pallet'" in n for n in notes) and not any("forklift" in n for n in notes), notes

        resources = agent.get("/stream/performance")[1]["system_resources"]
        assert 0 <= resources["cpu_usage"] <= 100 and 0 < resources["memory_usage"] <= 100
        assert resources["gpu_usage"] is None
        agent.signal(signal.SIGTERM)
        assert agent.wait_exit(10) == 0
        # mDNS is disabled in this config: not one mDNS line, at any level, across start, reload and stop.
        assert not [ln for ln in agent.stderr_lines if "mDNS" in ln or "zeroconf" in ln], agent.stderr_lines
    finally:
        agent.kill()
        notify.close()
