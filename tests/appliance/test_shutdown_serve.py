"""SIGTERM and stalls on a real `edge-agent serve`: one deadline for the drain, readiness kept, 503 not hangs."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp

from tests.support.agent import AgentProcess, NotifySocket, agent_cache, edge_agent_bin, write_config

__all__ = ["agent_cache"]

JPEG = {"Content-Type": "image/jpeg"}


async def _frames_received(http: aiohttp.ClientSession, agent: AgentProcess) -> float:
    async with http.get(agent.url("/metrics")) as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("edge_agent_frames_received_total "):
                return float(line.split()[1])
    return 0.0


async def _post(http: aiohttp.ClientSession, agent: AgentProcess, jpeg: bytes) -> tuple[int, str, float]:
    async with http.post(agent.url("/v1/detect"), data=jpeg, headers=JPEG) as resp:
        body = await resp.json()
        return resp.status, body["error"]["code"] if "error" in body else "", time.monotonic()


async def test_sigterm_with_stalled_engine_answers_503_and_exits_within_the_deadline(
    tmp_path: Path, agent_cache: Path, photos: dict[str, bytes]
) -> None:
    timeout = 4.0
    config = write_config(
        tmp_path / "c.toml",
        agent_cache,
        server={"shutdown_timeout": timeout},
        systemd={"max_inference_age": 60.0},  # the requests' own timeout must not be what ends them
        debug={"fault_injection": True},
    )
    notify = NotifySocket(tmp_path)
    agent = AgentProcess(config, env={"NOTIFY_SOCKET": notify.env_value})
    try:
        await asyncio.to_thread(notify.wait_for, "READY", "1", 90)
        agent.wait_listening(5)
        async with aiohttp.ClientSession() as http:
            async with http.post(agent.url("/debug/fault/stall")) as resp:
                assert resp.status == 200
            waiting = [asyncio.create_task(_post(http, agent, photos["bus"])) for _ in range(2)]
            async with asyncio.timeout(10):
                while await _frames_received(http, agent) < 2:  # both requests are in, waiting on the engine
                    await asyncio.sleep(0.05)
            mark = len(notify.messages)
            agent.signal(signal.SIGTERM)
            started = time.monotonic()
            await asyncio.to_thread(notify.wait_for, "STOPPING", "1", 5, mark)
            # The listener stays during the drain: readiness probes get an answer, 503.
            async with http.get(agent.url("/readyz")) as resp:
                assert resp.status == 503 and (await resp.json(content_type=None))["output"] == "stopping"
            async with http.get(agent.url("/livez")) as resp:
                assert resp.status == 200
            async with http.post(agent.url("/v1/detect"), data=photos["bus"], headers=JPEG) as resp:
                assert resp.status == 503  # no new work while stopping
            answers = await asyncio.gather(*waiting)
        code = await asyncio.to_thread(agent.wait_exit, timeout + 2)
        took = time.monotonic() - started
        print(f"SIGTERM to exit: {took:.2f}s; answers at {[round(t - started, 2) for *_, t in answers]}s")
        assert [(status, err) for status, err, _ in answers] == [(503, "engine_stopped")] * 2, answers
        assert all(t - started <= timeout for *_, t in answers)
        assert code == 0 and took <= timeout + 0.5, took
        assert notify.fields()[-1] == {"STATUS": "stopped"}
    finally:
        agent.kill()
        notify.close()


async def test_detect_during_a_stall_times_out_with_503(
    tmp_path: Path, agent_cache: Path, photos: dict[str, bytes]
) -> None:
    limit = 2.0
    config = write_config(
        tmp_path / "c.toml",
        agent_cache,
        systemd={"max_inference_age": limit},
        debug={"fault_injection": True},
    )
    agent = AgentProcess(config)
    try:
        agent.wait_listening()
        async with aiohttp.ClientSession() as http:
            async with http.post(agent.url("/debug/fault/stall")) as resp:
                assert resp.status == 200
            started = time.monotonic()
            status, code, done = await _post(http, agent, photos["bus"])
            assert (status, code) == (503, "inference_timeout")
            assert limit <= done - started < limit + 1.5
    finally:
        agent.kill()


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [edge_agent_bin(), "serve", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_serve_on_a_busy_port_says_so_in_one_line_before_compiling(tmp_path: Path, agent_cache: Path) -> None:
    config = write_config(tmp_path / "c.toml", agent_cache)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        out = _serve("--config", str(config), "--port", str(port))
    took = time.monotonic() - started
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert took < 10, took  # no model compile first


def test_serve_on_an_address_this_host_lacks_says_so(tmp_path: Path, agent_cache: Path) -> None:
    config = write_config(tmp_path / "c.toml", agent_cache)
    out = _serve("--config", str(config), "--host", "192.0.2.1")  # TEST-NET-1: never ours
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "error: cannot listen on 192.0.2.1:0: Cannot assign requested address"
    ]
