"""`edge-agent bench`: N closed-loop WebSocket clients against a server, next to benchmark_app on the same IR.

By default it starts its own servers (`edge-agent serve` in a subprocess on 127.0.0.1): one with the LATENCY
hint for the 1-client figure and one with the THROUGHPUT hint for more clients, as benchmark_app's two
figures are measured; rounds are interleaved with benchmark_app because edge boxes are noisy. With --url it
drives an already running server instead (its own hint for every figure).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import simplejpeg

from ..allocator import keep_reads_on_heap
from .bench_procs import benchmark_app, server
from .deflate import SAMPLE_REPLY, deflate_report


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
    """A camera-like JPEG (4:2:0, as cameras and browsers send): gradients plus sensor noise (deterministic)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(7)
    img = np.stack([x / width * 255, y / height * 255, (x + y) / (width + height) * 255], axis=-1)
    img += rng.normal(0, 6, img.shape)
    pixels = np.clip(img, 0, 255).astype(np.uint8)
    jpeg: bytes = simplejpeg.encode_jpeg(pixels, quality=85, colorspace="RGB", colorsubsampling="420")
    return jpeg


def _summarise(run: Run, counts: list[int], seconds: float) -> Run:
    lat = sorted(run.latencies)
    if lat:
        run.fps = sum(counts) / seconds
        run.p50 = lat[len(lat) // 2]
        run.p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    return run


async def engine_direct(config: str | None, hint: str, callers: int, seconds: float, frame: bytes) -> Run:
    """The same closed loop straight on an in-process Engine: what the streaming layer adds is the difference."""
    from ..config import load_config
    from ..inference.engine import Engine

    loaded = load_config(Path(config) if config else None, overrides={("engine", "performance_hint"): hint})
    engine = Engine(loaded.config)
    await engine.async_start()
    run = Run(0.0, 0.0, 0.0)
    start = time.perf_counter()

    async def caller() -> int:
        done = 0
        while (now := time.perf_counter()) < start + 1.0 + seconds:
            await engine.detect(frame)
            if now >= start + 1.0:
                run.latencies.append((time.perf_counter() - now) * 1e3)
                done += 1
        return done

    try:
        return _summarise(run, list(await asyncio.gather(*(caller() for _ in range(callers)))), seconds)
    finally:
        await engine.async_stop()


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
    return _summarise(run, list(counts), seconds)


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
        "--rounds", type=int, default=3, help="interleaved rounds; medians are printed (default 3)"
    )
    p.add_argument("--image", help="JPEG to send (default: a synthetic 640x480 frame)")
    p.add_argument("--model", help="IR for benchmark_app (default: the built-in model)")
    p.add_argument("--device", default="CPU", help="benchmark_app device (default CPU)")
    p.add_argument("--no-benchmark-app", action="store_true", help="skip the benchmark_app reference")
    p.add_argument("--no-engine", action="store_true", help="skip the in-process engine reference")
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
            if not args.no_engine:
                hint = "LATENCY" if n == 1 else "THROUGHPUT"
                direct = asyncio.run(engine_direct(args.config, hint, n, args.seconds, frame))
                runs.setdefault(f"engine {n} caller{'s' if n > 1 else ''} (no server)", []).append(direct)
        if not args.no_benchmark_app:
            for hint in ("latency", "throughput"):
                fps, median = benchmark_app(model, args.device, hint, max(5, int(args.seconds)))
                runs.setdefault(f"benchmark_app {hint}", []).append(Run(fps, median, float("nan")))
    return runs


def _default_model() -> Path:
    from ..inference.models.loader import default_model_path

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
    for n in counts:
        ws, eng = (
            f"ws {n} client{'s' if n > 1 else ''}",
            f"engine {n} caller{'s' if n > 1 else ''} (no server)",
        )
        if ws in med and eng in med:
            print(
                f"{n} client(s): WebSocket / in-process engine FPS {med[ws].fps / med[eng].fps:.3f}, "
                f"p50 {med[ws].p50 / med[eng].p50:.3f}"
            )
    if ba_l and "ws 1 client" in med:
        print(
            f"1 client p50 / benchmark_app latency median: {med['ws 1 client'].p50 / ba_l.p50:.3f} (target <= 1.15)"
        )


def main(argv: list[str]) -> int:
    """Entry point of `edge-agent bench`; prints one table."""
    args = _parse(argv)
    keep_reads_on_heap()  # the clients read replies the way the server reads frames (see allocator.py)
    if args.deflate is not None:
        frames = {Path(f).name: Path(f).read_bytes() for f in args.deflate}
        deflate_report({**frames, "synthetic 640x480": synthetic_frame(), "detections reply": SAMPLE_REPLY})
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
