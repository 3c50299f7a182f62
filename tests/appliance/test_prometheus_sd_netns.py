"""`discover --prometheus-sd` against two real agents in two network namespaces; promtool checks the file."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.appliance.test_mdns_netns import A_IP, B_IP, namespaces
from tests.support.agent import AgentProcess, NotifySocket, agent_cache, write_config

__all__ = ["agent_cache", "namespaces"]

pytestmark = pytest.mark.slow


def test_file_sd_of_a_two_agent_fleet(namespaces: tuple[str, str], tmp_path: Path, agent_cache: Path) -> None:
    procs: list[AgentProcess] = []
    try:
        for side, ns in (("a", namespaces[0]), ("b", namespaces[1])):
            (tmp_path / side).mkdir()
            notify = NotifySocket(tmp_path / side)
            cfg = write_config(
                tmp_path / side / "c.toml",
                agent_cache,
                server={"host": "0.0.0.0", "port": 8080},
                mdns={"enabled": True, "instance_name": f"fleet-{side}"},
            )
            procs.append(
                AgentProcess(cfg, env={"NOTIFY_SOCKET": notify.env_value}, prefix=["ip", "netns", "exec", ns])
            )
            notify.wait_for("READY", "1", timeout=90)
        sd = tmp_path / "agents.json"
        cmd = [
            sys.executable,
            "-m",
            "edge_agent.tools.discover",
            "--prometheus-sd",
            str(sd),
            "--timeout",
            "4",
        ]
        out = subprocess.run(
            ["ip", "netns", "exec", namespaces[1], *cmd],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        groups = json.loads(sd.read_text())
        assert sorted(g["targets"][0] for g in groups) == [f"{A_IP}:8080", f"{B_IP}:8080"]
        assert {g["labels"]["agent_name"] for g in groups} == {"fleet-a", "fleet-b"}
        assert all(g["labels"]["model"] == "yolov3-tiny" and g["labels"]["agent_id"] for g in groups)
        conf = tmp_path / "prometheus.yml"
        conf.write_text(
            f"scrape_configs:\n  - job_name: edge-agent\n    file_sd_configs:\n      - files: ['{sd}']\n"
        )
        promtool = shutil.which("promtool") or pytest.fail("promtool missing (Debian package prometheus)")
        check = subprocess.run(
            [promtool, "check", "config", str(conf)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr

        # --watch: when an agent leaves (SIGTERM sends mDNS goodbyes) the file is rewritten without it.
        watch = [*cmd[:-1], "2", "--watch"]
        watcher = subprocess.Popen(
            ["ip", "netns", "exec", namespaces[1], *watch], stderr=subprocess.PIPE, text=True
        )
        deadline = threading.Timer(60, watcher.kill)  # never hang on a watcher that does not rewrite
        deadline.start()
        try:
            procs[0].signal(signal.SIGTERM)
            assert procs[0].wait_exit(30) == 0
            assert watcher.stderr is not None
            for line in watcher.stderr:  # one line per rewrite: "<file>: N agents"
                if line.strip().endswith(": 1 agents"):
                    break
            groups = json.loads(sd.read_text())
            assert [g["targets"][0] for g in groups] == [f"{B_IP}:8080"]
        finally:
            deadline.cancel()
            watcher.terminate()
            watcher.wait(10)
    finally:
        for p in procs:
            p.kill()
