"""The real `edge-agent serve` talking to a stand-in systemd over a real notify socket."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from tests.support.agent import AgentProcess, NotifySocket, agent_cache, write_config

__all__ = ["agent_cache"]


@pytest.mark.parametrize("form", ["path", "abstract"])
def test_ready_only_once_listening_then_stopping_and_exit_0(
    form: str, tmp_path: Path, agent_cache: Path
) -> None:
    notify = NotifySocket(tmp_path, abstract=form == "abstract")
    agent = AgentProcess(
        write_config(tmp_path / "c.toml", agent_cache), env={"NOTIFY_SOCKET": notify.env_value}
    )
    try:
        ready = notify.wait_for("READY", "1", timeout=90)
        ready_at = notify.messages[ready][0]
        # READY=1 means the port already accepts connections and inference works.
        port = agent.wait_listening(timeout=5)
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        status, body = agent.get("/readyz")
        assert (status, body["status"]) == (200, "pass")

        before = notify.fields()[:ready]
        statuses = [f["STATUS"] for f in before if "STATUS" in f]
        assert statuses[0].startswith("starting")
        assert "compiling model on CPU" in statuses, statuses  # needs attach_engine() in engine_ctx
        assert any("EXTEND_TIMEOUT_USEC" in f for f in before)
        assert int(next(f["EXTEND_TIMEOUT_USEC"] for f in before if "EXTEND_TIMEOUT_USEC" in f)) >= 60_000_000
        assert notify.fields()[ready]["STATUS"].startswith("ready: idle, model yolov3-tiny on CPU")
        assert all(f.get("STATUS", "").isascii() for f in notify.fields())

        agent.signal(signal.SIGTERM)
        stopping = notify.wait_for("STOPPING", "1", timeout=10, after=ready)
        assert notify.messages[stopping][0] >= ready_at
        started = time.monotonic()
        assert agent.wait_exit(timeout=10) == 0
        assert time.monotonic() - started < 5.0 + 1.0  # within server.shutdown_timeout (5 s here)
        assert notify.fields()[-1] == {"STATUS": "stopped"}
    finally:
        agent.kill()
        notify.close()


def test_without_notify_socket_serves_normally(tmp_path: Path, agent_cache: Path) -> None:
    agent = AgentProcess(write_config(tmp_path / "c.toml", agent_cache))
    try:
        agent.wait_listening()
        status, body = agent.get("/healthz")
        assert status == 200 and body["status"] == "pass"
        agent.signal(signal.SIGINT)
        assert agent.wait_exit(timeout=10) == 0
    finally:
        agent.kill()
