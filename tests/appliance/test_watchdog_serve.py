"""systemd watchdog end to end: the real `edge-agent serve`, a real notify socket, WATCHDOG_USEC and a real stall."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.support.agent import AgentProcess, NotifySocket, agent_cache, assert_quiet, write_config

__all__ = ["agent_cache"]

PERIOD_S = 1.0
MAX_AGE_S = 2.0


@pytest.mark.parametrize("form", ["path", "abstract"])
def test_pings_while_alive_and_stop_after_a_stall(form: str, tmp_path: Path, agent_cache: Path) -> None:
    config = write_config(
        tmp_path / "c.toml",
        agent_cache,
        systemd={"watchdog_probe_interval": 0.3, "max_inference_age": MAX_AGE_S},
        debug={"fault_injection": True},
    )
    notify = NotifySocket(tmp_path, abstract=form == "abstract")
    env = {"NOTIFY_SOCKET": notify.env_value, "WATCHDOG_USEC": str(int(PERIOD_S * 1e6))}
    agent = AgentProcess(config, env=env)
    try:
        ready = notify.wait_for("READY", "1", timeout=90)
        agent.wait_listening(timeout=5)
        # Idle for well over max_inference_age: probe inferences keep the pings going.
        for _ in range(8):
            ready = notify.wait_for("WATCHDOG", "1", timeout=PERIOD_S * 2, after=ready + 1)
        pings = notify.times_of("WATCHDOG")
        gaps = [b - a for a, b in zip(pings[-8:], pings[-7:], strict=False)]
        assert max(gaps) < PERIOD_S, gaps  # about every half period: never late enough to trip systemd
        status, health = agent.get("/healthz")
        assert status == 200
        age = health["checks"]["inference:age"][0]
        assert age["probes"] > 0 and age["observedValue"] < MAX_AGE_S

        status, body = agent.get("/debug/fault/stall", method="POST")
        assert (status, body) == (200, {"fault": "stall", "injected": True})
        stalled_at = time.monotonic()
        unhealthy = notify.wait_for(
            "STATUS", None, timeout=MAX_AGE_S + 3 * PERIOD_S, after=len(notify.messages)
        )
        while not notify.fields()[unhealthy]["STATUS"].startswith("unhealthy"):
            unhealthy = notify.wait_for("STATUS", None, timeout=MAX_AGE_S + 3 * PERIOD_S, after=unhealthy + 1)
        assert "watchdog pings stopped" in notify.fields()[unhealthy]["STATUS"]
        # Once the agent decides it is stalled it asks systemd to act at once (systemd >= 251), within a
        # second of max_inference_age, instead of letting WatchdogSec run out.
        trigger = notify.wait_for("WATCHDOG", "trigger", timeout=MAX_AGE_S + 3, after=unhealthy - 1)
        triggered_at = notify.messages[trigger][0]
        assert triggered_at - stalled_at < MAX_AGE_S + 1.5, triggered_at - stalled_at
        # Then silence: no ping, no second trigger, for three whole periods.
        assert_quiet(notify, "WATCHDOG", after=trigger + 1, seconds=3 * PERIOD_S)

        assert agent.get("/livez")[0] == 200  # the loop is fine; inference is not
        status, ready_body = agent.get("/readyz")
        assert status == 503 and "no inference completed" in ready_body["output"]
        status, health = agent.get("/healthz")
        assert status == 503 and health["status"] == "fail"
        assert health["checks"]["inference:age"][0]["status"] == "fail"

        agent.signal(signal.SIGTERM)
        assert agent.wait_exit(timeout=10) == 0  # a stuck request must not hang the shutdown
    finally:
        agent.kill()
        notify.close()


def test_no_pings_without_watchdog_usec(tmp_path: Path, agent_cache: Path) -> None:
    notify = NotifySocket(tmp_path)
    agent = AgentProcess(
        write_config(tmp_path / "c.toml", agent_cache), env={"NOTIFY_SOCKET": notify.env_value}
    )
    try:
        ready = notify.wait_for("READY", "1", timeout=90)
        assert not notify.times_of("WATCHDOG")
        assert_quiet(notify, "WATCHDOG", after=ready, seconds=1.0)
        assert agent.get("/debug/fault/stall", method="POST")[0] == 404  # fault injection is off by default
        agent.signal(signal.SIGTERM)
        assert agent.wait_exit(timeout=10) == 0
    finally:
        agent.kill()
        notify.close()
