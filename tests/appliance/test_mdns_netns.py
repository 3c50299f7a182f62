"""mDNS between two network namespaces joined by a veth pair: real agents, real discovery, conflicts, goodbye."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.agent import AgentProcess, NotifySocket, agent_cache, write_config

__all__ = ["agent_cache"]

pytestmark = pytest.mark.slow
AGENT_TYPE = "_edge-agent._tcp.local."
A_IP, B_IP, A_SECOND_IP = "10.77.0.1", "10.77.0.2", "10.77.0.5"
NETNS_ETC = Path("/etc/netns")

MONITOR = """
import asyncio, json, sys
from zeroconf import ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

async def report(zc, change, name):
    line = {"change": change.name, "name": name}
    if change is not ServiceStateChange.Removed:
        info = AsyncServiceInfo("_edge-agent._tcp.local.", name)
        if await info.async_request(zc, 3000):
            line.update(addresses=sorted(info.parsed_addresses()), port=info.port, txt=info.decoded_properties)
    print(json.dumps(line), flush=True)

async def main():
    aiozc = AsyncZeroconf()
    tasks = set()
    def on(zeroconf, service_type, name, state_change):
        t = asyncio.ensure_future(report(zeroconf, state_change, name)); tasks.add(t)
    AsyncServiceBrowser(aiozc.zeroconf, ["_edge-agent._tcp.local."], handlers=[on])
    print(json.dumps({"change": "browsing"}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    """Two namespaces, lan0 (A, 10.77.0.1) <-> lan1 (B, 10.77.0.2), plus a docker0 bridge in A that must be ignored."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tag = uuid.uuid4().hex[:6]
    a, b = f"ea-a-{tag}", f"ea-b-{tag}"
    try:
        for ns in (a, b):
            # `ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc: each namespace is a separate box.
            etc = NETNS_ETC / ns
            etc.mkdir(parents=True)
            (etc / "machine-id").write_text(uuid.uuid4().hex + "\n")
        ip("netns", "add", a)
        ip("netns", "add", b)
        ip("link", "add", "lan0", "netns", a, "type", "veth", "peer", "name", "lan1", "netns", b)
        ip("-n", a, "addr", "add", f"{A_IP}/24", "dev", "lan0")
        ip("-n", b, "addr", "add", f"{B_IP}/24", "dev", "lan1")
        ip("-n", a, "link", "add", "docker0", "type", "bridge")
        ip("-n", a, "addr", "add", "172.17.0.1/16", "dev", "docker0")
        for ns, dev in ((a, "lo"), (b, "lo"), (a, "lan0"), (b, "lan1"), (a, "docker0")):
            ip("-n", ns, "link", "set", dev, "up")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        with contextlib.suppress(OSError):
            NETNS_ETC.rmdir()  # only if empty: other tools may keep files there


class Monitor:
    """A zeroconf browser process in a namespace; its JSON event lines are collected."""

    def __init__(self, ns: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", MONITOR], stdout=subprocess.PIPE, text=True
        )
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()
        self.wait(lambda e: e["change"] == "browsing")

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.events.append(json.loads(line))
                self._cond.notify_all()

    def wait(self, match: Any, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hit = next((e for e in self.events if match(e)), None)
                if hit is not None:
                    return hit
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"no matching mDNS event within {timeout}s; saw {self.events}")
                self._cond.wait(left)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


def discover(ns: str, timeout: float = 3.0) -> list[dict[str, Any]]:
    """`edge-agent discover --json` run inside a namespace."""
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-m",
            "edge_agent.tools.discover",
            "--json",
            "--timeout",
            str(timeout),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else []


def test_agents_across_namespaces(namespaces: tuple[str, str], tmp_path: Path, agent_cache: Path) -> None:
    ns_a, ns_b = namespaces
    procs: list[AgentProcess] = []
    monitor = Monitor(ns_b)
    try:
        name = "edge-twin"
        fqdn = f"{name}.{AGENT_TYPE}"
        for side, _ns in (("a", ns_a), ("b", ns_b)):
            (tmp_path / side).mkdir()
        notify_a = NotifySocket(tmp_path / "a")  # a path socket: abstract ones are per network namespace
        cfg_a = write_config(
            tmp_path / "a" / "c.toml",
            agent_cache,
            server={"host": "0.0.0.0", "port": 8080},
            mdns={"enabled": True, "instance_name": name},
        )
        agent_a = AgentProcess(
            cfg_a, env={"NOTIFY_SOCKET": notify_a.env_value}, prefix=["ip", "netns", "exec", ns_a]
        )
        procs.append(agent_a)
        notify_a.wait_for("READY", "1", timeout=90)

        # B sees A on the veth address only: not loopback, not the docker0 bridge.
        added = monitor.wait(lambda e: e["change"] == "Added" and e["name"] == fqdn and "addresses" in e)
        assert added["addresses"] == [A_IP] and added["port"] == 8080
        assert added["txt"]["model"] == "yolov3-tiny" and added["txt"]["auth"] == "none"
        assert added["txt"]["ws"] == "/stream/detection" and added["txt"]["health"] == "/healthz"

        found = {a["name"]: a for a in discover(ns_b)}
        # No token while listening beyond loopback: /healthz warns (auth:token), as an operator should see.
        assert found[name]["addresses"] == [A_IP] and found[name]["health"] == "warn"
        assert found[name]["txt"]["id"] == added["txt"]["id"]

        # A second box with the same instance name must take a new one.
        cfg_b = write_config(
            tmp_path / "b" / "c.toml",
            agent_cache,
            server={"host": "0.0.0.0", "port": 8080},
            mdns={"enabled": True, "instance_name": name},
        )
        agent_b = AgentProcess(cfg_b, prefix=["ip", "netns", "exec", ns_b])
        procs.append(agent_b)
        renamed = monitor.wait(
            lambda e: e["change"] == "Added" and e["name"] == f"{name}-2.{AGENT_TYPE}" and "addresses" in e,
            60,
        )
        assert renamed["addresses"] == [B_IP]  # cloned boxes share a host name, but not their A records
        assert renamed["txt"]["id"] != added["txt"]["id"]
        agent_b.log_contains("mDNS: advertising edge-twin-2 on 10.77.0.2 port 8080", timeout=10)

        # A new address on A's LAN interface is re-announced without a restart.
        ip("-n", ns_a, "addr", "add", f"{A_SECOND_IP}/24", "dev", "lan0")
        agent_a.log_contains("addresses changed to 10.77.0.1, 10.77.0.5", timeout=15)
        monitor.wait(
            lambda e: (
                e["change"] == "Updated" and e["name"] == fqdn and e.get("addresses") == [A_IP, A_SECOND_IP]
            ),
            timeout=15,
        )
        after_change = {a["name"]: a for a in discover(ns_b)}
        assert after_change[name]["addresses"] == [A_IP, A_SECOND_IP], after_change

        # SIGTERM: goodbye packets make B drop A at once, and A exits 0.
        agent_a.signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        monitor.wait(lambda e: e["change"] == "Removed" and e["name"] == fqdn, timeout=10)
        assert time.monotonic() - stopped_at < 6.0
        assert agent_a.wait_exit(timeout=15) == 0
        assert notify_a.fields()[-1] == {"STATUS": "stopped"}
    finally:
        monitor.stop()
        for p in procs:
            p.kill()
