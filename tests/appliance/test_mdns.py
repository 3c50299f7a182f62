"""mDNS for real on loopback: registration of both types, TXT, conflict renaming, updates, goodbye, discover."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from zeroconf import ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from edge_agent import __version__
from edge_agent.app import create_app
from edge_agent.appliance import APPLIANCE, mark_listening
from edge_agent.appliance.identity import device_id
from edge_agent.appliance.mdns import AGENT_TYPE, HTTP_TYPE
from edge_agent.appliance.netifs import select_addresses
from edge_agent.config import Config, LoadedConfig
from edge_agent.runtime import AGENT

LOOPBACK = ["127.0.0.1"]


def _nic(*ips: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(family=socket.AF_INET, address=ip) for ip in ips] + [
        SimpleNamespace(family=socket.AF_INET6, address="fe80::1")
    ]


def test_default_interfaces_skip_loopback_virtual_and_down() -> None:
    addrs = {
        "lo": _nic("127.0.0.1"),
        "eth0": _nic("192.168.1.20"),
        "wlan0": _nic("10.0.0.7"),
        "docker0": _nic("172.17.0.1"),
        "br-5a1b2c": _nic("172.18.0.1"),
        "veth12ab": _nic("169.254.3.3"),
        "virbr0": _nic("192.168.122.1"),
        "eth1": _nic("192.168.9.9"),
    }
    stats = {name: SimpleNamespace(isup=name != "eth1") for name in addrs}
    assert select_addresses([], addrs, stats) == ["10.0.0.7", "192.168.1.20"]
    # Configured: interface names resolve to their addresses; literal addresses are kept as given.
    assert select_addresses(["docker0", "127.0.0.1"], addrs, stats) == ["127.0.0.1", "172.17.0.1"]
    assert select_addresses(["nosuch0"], addrs, stats) == []


def test_device_id_prefers_provisioned_file(tmp_path: Path) -> None:
    machine = tmp_path / "machine-id"
    machine.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    derived = device_id(tmp_path / "absent", (machine,))
    assert len(derived) == 16 and int(derived, 16) >= 0
    assert derived == device_id(tmp_path / "absent", (machine,))  # stable across restarts
    assert derived not in machine.read_text()  # the raw machine id is not published
    provisioned = tmp_path / "device-id"
    provisioned.write_text("edge-0042\n")
    assert device_id(provisioned, (machine,)) == "edge-0042"


class Browser:
    """A real zeroconf browser on loopback recording (type, name, change) events."""

    def __init__(self) -> None:
        self.zc = AsyncZeroconf(interfaces=LOOPBACK)
        self.events: list[tuple[str, str, ServiceStateChange]] = []
        self._changed = asyncio.Event()
        self.browser = AsyncServiceBrowser(self.zc.zeroconf, [AGENT_TYPE, HTTP_TYPE], handlers=[self._on])

    def _on(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        self.events.append((service_type, name, state_change))
        self._changed.set()

    async def wait(self, type_: str, name: str, change: ServiceStateChange, timeout: float = 10.0) -> None:
        """Until that event was seen (fails on timeout)."""
        async with asyncio.timeout(timeout):
            while (type_, name, change) not in self.events:
                self._changed.clear()
                await self._changed.wait()

    async def resolve(self, type_: str, name: str) -> AsyncServiceInfo:
        info = AsyncServiceInfo(type_, name)
        assert await info.async_request(self.zc.zeroconf, 3000), f"{name} did not resolve"
        return info

    async def close(self) -> None:
        await self.browser.async_cancel()
        await self.zc.async_close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    b = Browser()
    yield b
    await b.close()


def _advertised(config: Config, instance: str, **server: Any) -> LoadedConfig:
    cfg = config.model_copy(deep=True)
    cfg.mdns.enabled, cfg.mdns.instance_name, cfg.mdns.interfaces = True, instance, LOOPBACK
    for key, value in server.items():
        setattr(cfg.server, key, value)
    return LoadedConfig(config=cfg, sources={}, path=None)


async def _serve(loaded: LoadedConfig) -> tuple[web.Application, web.AppRunner, int]:
    app = create_app(loaded)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    mark_listening(app, [port])
    return app, runner, port


@pytest.fixture
def instance() -> str:
    return f"edge-test-{uuid.uuid4().hex[:8]}"


async def test_registers_both_types_with_txt(config: Config, browser: Browser, instance: str) -> None:
    app, runner, port = await _serve(_advertised(config, instance))
    try:
        name = f"{instance}.{AGENT_TYPE}"
        await browser.wait(AGENT_TYPE, name, ServiceStateChange.Added)
        await browser.wait(HTTP_TYPE, f"{instance}.{HTTP_TYPE}", ServiceStateChange.Added)
        info = await browser.resolve(AGENT_TYPE, name)
        assert info.parsed_addresses() == LOOPBACK and info.port == port
        assert info.decoded_properties == {
            "version": __version__,
            "model": "yolov3-tiny",
            "precision": "fp32",
            "device": "CPU",
            "ws": "/stream/detection",
            "sse": "/stream/events",
            "health": "/healthz",
            "path": "/",
            "auth": "none",
            "id": app[APPLIANCE].identity.device_id,
        }
        viewer = await browser.resolve(HTTP_TYPE, f"{instance}.{HTTP_TYPE}")
        assert viewer.port == port and viewer.decoded_properties["path"] == "/"
    finally:
        await runner.cleanup()


async def test_name_conflict_takes_a_new_name(config: Config, browser: Browser, instance: str) -> None:
    # The browser fixture is one more mDNS socket on port 5353 of this host: the conflict check must not
    # depend on unicast answers, which only one of those sockets receives.
    _, first_runner, first_port = await _serve(_advertised(config, instance))
    await browser.wait(AGENT_TYPE, f"{instance}.{AGENT_TYPE}", ServiceStateChange.Added)
    second, second_runner, second_port = await _serve(_advertised(config, instance))
    try:
        renamed = f"{instance}-2.{AGENT_TYPE}"
        await browser.wait(AGENT_TYPE, renamed, ServiceStateChange.Added)
        await browser.wait(HTTP_TYPE, f"{instance}-2.{HTTP_TYPE}", ServiceStateChange.Added)
        async with asyncio.timeout(5):
            while len(second[APPLIANCE].advertiser.names) < 2:
                await asyncio.sleep(0.05)
        assert second[APPLIANCE].advertiser.names == [renamed, f"{instance}-2.{HTTP_TYPE}"]
        assert (await browser.resolve(AGENT_TYPE, renamed)).port == second_port
        assert (await browser.resolve(AGENT_TYPE, f"{instance}.{AGENT_TYPE}")).port == first_port
    finally:
        await second_runner.cleanup()
        await first_runner.cleanup()


async def test_txt_follows_config_change_and_goodbye_on_shutdown(
    config: Config, browser: Browser, instance: str
) -> None:
    app, runner, _ = await _serve(_advertised(config, instance))
    name = f"{instance}.{AGENT_TYPE}"
    try:
        await browser.wait(AGENT_TYPE, name, ServiceStateChange.Added)
        # What a SIGHUP reload does: swap the config, then signal the change.
        app[AGENT].loaded = _advertised(config, instance, token="s3cret")
        app[APPLIANCE].lifecycle.changed.set()
        await browser.wait(AGENT_TYPE, name, ServiceStateChange.Updated)
        assert (await browser.resolve(AGENT_TYPE, name)).decoded_properties["auth"] == "token"
    finally:
        await runner.cleanup()
    # Goodbye packets: browsers drop the entry at once instead of after the 75-120 s TTL.
    await browser.wait(AGENT_TYPE, name, ServiceStateChange.Removed, timeout=5)
    await browser.wait(HTTP_TYPE, f"{instance}.{HTTP_TYPE}", ServiceStateChange.Removed, timeout=5)


async def test_unusable_interface_is_reported_and_serving_goes_on(
    config: Config, instance: str, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = _advertised(config, instance)
    loaded.config.mdns.interfaces = ["192.0.2.99"]  # TEST-NET-1: on no interface of this machine
    app, runner, port = await _serve(loaded)
    try:
        async with asyncio.timeout(10):
            while app[APPLIANCE].advertiser.last_error is None:
                await asyncio.sleep(0.05)
        assert (app[APPLIANCE].advertiser.last_error or "").startswith("OSError")
        assert any("mDNS: advertisement failed" in r.getMessage() for r in caplog.records)
        assert app[APPLIANCE].advertiser.names == []
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as resp:
            assert resp.status == 200
    finally:
        await runner.cleanup()


async def _discover(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "edge_agent.tools.discover",
        "--interface",
        "127.0.0.1",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_discover_lists_agents_with_health(config: Config, instance: str) -> None:
    app, runner, port = await _serve(_advertised(config, instance))
    try:
        code, out, err = await _discover("--timeout", "2", "--json")
        assert code == 0, err
        agents = {a["name"]: a for a in json.loads(out)}
        agent = agents[instance]
        assert agent["addresses"] == LOOPBACK and agent["port"] == port
        assert (
            agent["txt"]["id"] == app[APPLIANCE].identity.device_id and agent["txt"]["model"] == "yolov3-tiny"
        )
        assert agent["health"] == "pass" and agent["health_detail"]["http_status"] == 200

        code, out, _ = await _discover("--timeout", "2")
        assert code == 0
        header, *rows = out.splitlines()
        assert header.split() == ["NAME", "ADDRESS", "ID", "VERSION", "MODEL", "DEVICE", "AUTH", "HEALTH"]
        row = next(r.split() for r in rows if r.startswith(instance + " "))
        assert row == [
            instance,
            f"127.0.0.1:{port}",
            app[APPLIANCE].identity.device_id,
            __version__,
            "yolov3-tiny",
            "CPU",
            "none",
            "pass",
        ]
    finally:
        await runner.cleanup()
    code, out, err = await _discover("--timeout", "1")
    assert code == 1 and out == "" and "no Edge Agents answered within 1s" in err


async def test_discover_rejects_bad_arguments() -> None:
    code, _, err = await _discover("--timeout", "0")
    assert code == 2 and "--timeout must be positive" in err


def test_cli_subcommand_reaches_discover() -> None:
    exe = str(Path(sys.executable).with_name("edge-agent"))
    out = subprocess.run(
        [exe, "discover", "--timeout", "0"], check=False, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2 and "edge-agent discover: error: --timeout must be positive" in out.stderr
