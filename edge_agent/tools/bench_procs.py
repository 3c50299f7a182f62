"""Processes the bench starts: `edge-agent serve` on a free loopback port, and OpenVINO's benchmark_app."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

BENCH_ENV = {
    # No rate limit or adaptive FPS: the bench measures what the pipeline can do.
    "STREAMING_MAX_FPS": "240",
    "STREAMING_DEFAULT_FPS": "240",
    "EDGE_AGENT_STREAMING__ADAPTIVE_FPS": "false",
    # The memory figure opens 200 idle sessions, all from this one loopback peer.
    "EDGE_AGENT_STREAMING__MAX_SESSIONS": "256",
    "EDGE_AGENT_SERVER__MAX_SESSIONS_PER_PEER": "256",
    "EDGE_AGENT_SERVER__MAX_CONNECTIONS_PER_PEER": "512",
    "EDGE_AGENT_MDNS__ENABLED": "false",
}


def benchmark_app(
    model: Path, device: str, hint: str, seconds: int, precision: str = "auto"
) -> tuple[float, float]:
    """OpenVINO's benchmark_app on the same IR and inference precision: throughput and median latency."""
    exe = Path(sys.executable).with_name("benchmark_app")
    cmd = [
        str(exe) if exe.exists() else "benchmark_app",
        "-m",
        str(model),
        "-d",
        device,
        "-hint",
        hint,
        "-t",
        str(seconds),
    ] + ([] if precision == "auto" else ["-infer_precision", precision])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    fps = re.search(r"Throughput:\s+([\d.]+) FPS", out)
    median = re.search(r"Median:\s+([\d.]+) ms", out)
    if fps is None or median is None:
        raise RuntimeError(f"cannot parse benchmark_app output:\n{out[-2000:]}")
    return float(fps.group(1)), float(median.group(1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class Served:
    """A server the bench started."""

    url: str  # ws://127.0.0.1:port/stream/detection
    pid: int

    def rss(self) -> int:
        """Resident set size in bytes."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def cpu(self) -> tuple[float, float]:
        """CPU seconds (user+system) of the event-loop thread and of the whole process."""
        proc = psutil.Process(self.pid)
        main = next((t for t in proc.threads() if t.id == self.pid), None)
        times = proc.cpu_times()
        loop = main.user_time + main.system_time if main else float("nan")
        return loop, times.user + times.system


@contextmanager
def server(hint: str, config: str | None, timeout: float = 300.0) -> Iterator[Served]:
    """`edge-agent serve` with the given hint in a subprocess; yields where it listens and its pid."""
    port = _free_port()
    env = {**os.environ, **BENCH_ENV, "OPENVINO_PERFORMANCE_MODE": hint}
    cmd = [
        sys.executable,
        "-c",
        "from edge_agent.cli import main; raise SystemExit(main())",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ] + (["--config", config] if config else [])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        asyncio.run(_wait_ready(f"http://127.0.0.1:{port}/v1/info", proc, timeout))
        yield Served(f"ws://127.0.0.1:{port}/stream/detection", proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _wait_ready(url: str, proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited ({proc.returncode}): {proc.stderr.read() if proc.stderr else ''}"
                )
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"server not ready after {timeout:.0f} s")
