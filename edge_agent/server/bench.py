"""`edge-agent bench`: N closed-loop WebSocket clients against a server, next to benchmark_app on the same IR.

By default it starts its own servers (`edge-agent serve` in a subprocess on 127.0.0.1): one with the LATENCY
hint for the 1-client figure and one with the THROUGHPUT hint for more clients, as benchmark_app's two
figures are measured; rounds are interleaved with benchmark_app because edge boxes are noisy. With --url it
drives an already running server instead (its own hint for every figure).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import simplejpeg

BENCH_ENV = {
    # No rate limit or adaptive FPS: the bench measures what the pipeline can do.
    "STREAMING_MAX_FPS": "240",
    "STREAMING_DEFAULT_FPS": "240",
    "EDGE_AGENT_STREAMING__TARGET_LATENCY_MS": "600000",
    "EDGE_AGENT_MDNS__ENABLED": "false",
}


@dataclass
class Run:
    """Figures of one measurement."""

    fps: float
    p50: float
    p99: float
    dropped: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)


def synthetic_frame(width: int = 640, height: int = 480) -> bytes:
    """A camera-like 640x480 JPEG: smooth gradients plus sensor noise (deterministic)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(7)
    img = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    img += rng.normal(0, 12, img.shape)
    jpeg: bytes = simplejpeg.encode_jpeg(np.clip(img, 0, 255).astype(np.uint8), quality=85, colorspace="RGB")
    return jpeg


async def _client(
    url: str, token: str | None, frame: bytes, until: float, warm_until: float, run: Run
) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    done = 0
    async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers, max_msg_size=0) as ws:
        await ws.receive_json()  # session
        while (now := time.perf_counter()) < until:
            await ws.send_bytes(frame)
            while True:
                reply = await ws.receive_json()
                if reply["type"] in ("detections", "dropped", "error"):
                    break
            if now < warm_until:
                continue
            if reply["type"] == "detections":
                run.latencies.append((time.perf_counter() - now) * 1e3)
                done += 1
            elif reply["type"] == "dropped":
                run.dropped += 1
            else:
                run.errors += 1
    return done


async def drive(url: str, clients: int, seconds: float, frame: bytes, token: str | None = None) -> Run:
    """Closed loop: each client sends its next frame when the previous reply arrived."""
    run = Run(0.0, 0.0, 0.0)
    start = time.perf_counter()
    warm = 1.0
    counts = await asyncio.gather(
        *(_client(url, token, frame, start + warm + seconds, start + warm, run) for _ in range(clients))
    )
    lat = sorted(run.latencies)
    if lat:
        run.fps = sum(counts) / seconds
        run.p50 = lat[len(lat) // 2]
        run.p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    return run


def benchmark_app(model: Path, device: str, hint: str, seconds: int) -> Run:
    """OpenVINO's benchmark_app on the same IR: throughput and median latency."""
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
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    fps = re.search(r"Throughput:\s+([\d.]+) FPS", out)
    median = re.search(r"Median:\s+([\d.]+) ms", out)
    if fps is None or median is None:
        raise RuntimeError(f"cannot parse benchmark_app output:\n{out[-2000:]}")
    return Run(float(fps.group(1)), float(median.group(1)), float("nan"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server(hint: str, config: str | None, timeout: float = 300.0) -> Iterator[str]:
    """`edge-agent serve` with the given hint in a subprocess; yields its WebSocket URL."""
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
        yield f"ws://127.0.0.1:{port}/stream/detection"
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


def deflate_report(payloads: dict[str, bytes]) -> None:
    """What permessage-deflate (raw deflate, sync flush) would save and cost per message."""
    print(f"{'payload':22}{'bytes':>9}{'deflated':>10}{'ratio':>8}{'deflate ms':>12}{'inflate ms':>12}")
    for name, data in payloads.items():
        n = 200 if len(data) < 10_000 else 20
        t0 = time.perf_counter()
        for _ in range(n):
            c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
            out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        t1 = time.perf_counter()
        for _ in range(n):
            zlib.decompressobj(-15).decompress(out)
        t2 = time.perf_counter()
        ratio = len(out) / len(data)
        print(
            f"{name:22}{len(data):9d}{len(out):10d}{ratio:8.3f}{(t1 - t0) / n * 1e3:12.3f}{(t2 - t1) / n * 1e3:12.3f}"
        )


_SAMPLE_REPLY = (
    b'{"type":"detections","frame_id":123,"timestamp":1795754453.655588,"image_size":[1280,720],"detections":'
    b'[{"label":"person","class_id":0,"confidence":0.9135,"box":[734.5,18.5,1144.9,720.0]},{"label":"person",'
    b'"class_id":0,"confidence":0.62,"box":[313.5,211.7,797.0,720.0]},{"label":"tie","class_id":27,'
    b'"confidence":0.37,"box":[1005.1,332.0,1024.2,397.3]}],"hazards":[{"rule":"person","detections":[0,1],'
    b'"confidence":0.9135,"active":true}],"timing_ms":{"queue":0.06,"decode":2.92,"preprocess":0.97,'
    b'"inference":95.71,"postprocess":1.39,"total":101.14}}'
)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="edge-agent bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument(
        "--url", help="ws://host:port/stream/detection of a running server (default: start servers)"
    )
    p.add_argument("--token", help="bearer token of that server")
    p.add_argument("--config", help="config file for the servers this bench starts")
    p.add_argument("--clients", default="1,4", help="comma-separated client counts (default 1,4)")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (default 10)")
    p.add_argument(
        "--rounds", type=int, default=2, help="interleaved rounds; medians are printed (default 2)"
    )
    p.add_argument("--image", help="JPEG to send (default: a synthetic 640x480 frame)")
    p.add_argument("--model", help="IR for benchmark_app (default: the built-in model)")
    p.add_argument("--device", default="CPU", help="benchmark_app device (default CPU)")
    p.add_argument("--no-benchmark-app", action="store_true", help="skip the benchmark_app reference")
    p.add_argument(
        "--deflate", nargs="*", metavar="JPEG", help="only measure per-message deflate on these frames"
    )
    return p.parse_args(argv)


def _measure(args: argparse.Namespace, counts: list[int], frame: bytes) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {}
    model = Path(args.model) if args.model else _default_model()
    for _ in range(args.rounds):
        for n in counts:
            label = f"ws {n} client{'s' if n > 1 else ''}"
            if args.url:
                run = asyncio.run(drive(args.url, n, args.seconds, frame, args.token))
            else:
                with server("LATENCY" if n == 1 else "THROUGHPUT", args.config) as url:
                    run = asyncio.run(drive(url, n, args.seconds, frame))
            runs.setdefault(label, []).append(run)
        if not args.no_benchmark_app:
            for hint in ("latency", "throughput"):
                runs.setdefault(f"benchmark_app {hint}", []).append(
                    benchmark_app(model, args.device, hint, max(5, int(args.seconds)))
                )
    return runs


def _default_model() -> Path:
    from ..models.loader import default_model_path

    return default_model_path()


def _report(runs: dict[str, list[Run]], counts: list[int]) -> None:
    med = {
        k: Run(*(statistics.median(getattr(r, f) for r in v) for f in ("fps", "p50", "p99")))
        for k, v in runs.items()
    }
    print(f"{'':28}{'FPS':>9}{'p50 ms':>10}{'p99 ms':>10}  dropped errors")
    for label, run in med.items():
        extra = f"  {sum(r.dropped for r in runs[label]):7d} {sum(r.errors for r in runs[label]):6d}"
        p99 = "" if run.p99 != run.p99 else f"{run.p99:10.1f}"
        print(f"{label:28}{run.fps:9.1f}{run.p50:10.1f}{p99:>10}{extra if label.startswith('ws') else ''}")
    ba_t, ba_l = med.get("benchmark_app throughput"), med.get("benchmark_app latency")
    many = f"ws {max(counts)} clients"
    if ba_t and many in med:
        print(
            f"{max(counts)} clients / benchmark_app throughput FPS: {med[many].fps / ba_t.fps:.3f} (target >= 0.93)"
        )
    if ba_l and "ws 1 client" in med:
        print(
            f"1 client p50 / benchmark_app latency median: {med['ws 1 client'].p50 / ba_l.p50:.3f} (target <= 1.15)"
        )


def main(argv: list[str]) -> int:
    """Entry point of `edge-agent bench`; prints one table."""
    args = _parse(argv)
    if args.deflate is not None:
        frames = {Path(f).name: Path(f).read_bytes() for f in args.deflate}
        deflate_report({**frames, "synthetic 640x480": synthetic_frame(), "detections reply": _SAMPLE_REPLY})
        return 0
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    frame = Path(args.image).read_bytes() if args.image else synthetic_frame()
    try:
        runs = _measure(args, counts, frame)
    except (RuntimeError, OSError, subprocess.CalledProcessError, aiohttp.ClientError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    _report(runs, counts)
    return 0
