"""Engine benchmark next to OpenVINO's benchmark_app on the same IR and device (prints figures; no asserts).

    .venv/bin/python tests/perf/bench_engine.py [--seconds 10] [--rounds 2] [--device CPU]

Measures, in one run and interleaved round by round (the machine is noisy): benchmark_app throughput-hint FPS and
latency-hint median; the engine's sustained FPS and p50/p99 latency (JPEG decode included) for 640x480 and
1280x720 frames under closed-loop load (THROUGHPUT hint) and for one caller (LATENCY hint); cold vs warm start.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import simplejpeg

from edge_agent.config import Config, load_config
from edge_agent.inference.engine import Engine
from edge_agent.inference.models.loader import default_model_path
from edge_agent.tools.bench_procs import benchmark_app as tools_benchmark_app
from edge_agent.tools.model import build_default

ASSETS = (
    Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
)


def frames() -> dict[str, bytes]:
    """640x480 and 1280x720 JPEGs (4:2:0, as cameras and browsers send) from a real photograph."""
    photo = simplejpeg.decode_jpeg((ASSETS / "ultralytics" / "assets" / "zidane.jpg").read_bytes())
    crop = photo[:, 160:1120]  # 960x720 → 640x480
    small = crop[(np.arange(480) * 1.5).astype(int)][:, (np.arange(640) * 1.5).astype(int)]

    def enc(a: np.ndarray) -> bytes:
        return bytes(simplejpeg.encode_jpeg(np.ascontiguousarray(a), quality=85, colorsubsampling="420"))

    return {"640x480": enc(small), "1280x720": enc(photo)}


def benchmark_app(model: Path, device: str, hint: str, seconds: int) -> dict[str, float]:
    """benchmark_app's throughput and median latency, through the CLI's own wrapper."""
    fps, median = tools_benchmark_app(model, device, hint, seconds)
    return {"fps": fps, "p50": median}


def make_config(device: str, hint: str, cache: str) -> Config:
    return load_config(
        None,
        environ={},
        overrides={
            ("engine", "device"): device,
            ("engine", "performance_hint"): hint,
            ("engine", "cache_dir"): cache,
        },
    ).config


async def engine_run(cfg: Config, frame: bytes, seconds: float, callers: int | None) -> dict[str, float]:
    """Closed loop: `callers` concurrent senders (default 2 per infer request) for `seconds`."""
    engine = Engine(cfg)
    await engine.async_start()
    latencies: list[float] = []
    stop = time.perf_counter() + 1.0  # warm-up second, not counted

    async def sender(record: bool) -> None:
        while time.perf_counter() < stop:
            result = await engine.detect(frame)
            if record:
                latencies.append(result.timings.total)

    n = callers or engine.num_requests + 2
    await asyncio.gather(*(sender(False) for _ in range(n)))
    stop = time.perf_counter() + seconds
    t0 = time.perf_counter()
    await asyncio.gather(*(sender(True) for _ in range(n)))
    elapsed = time.perf_counter() - t0
    nireq = engine.num_requests
    await engine.async_stop()
    return {
        "fps": len(latencies) / elapsed,
        "p50": float(np.percentile(latencies, 50)),
        "p99": float(np.percentile(latencies, 99)),
        "nireq": nireq,
        "callers": n,
    }


async def start_time(cfg: Config) -> float:
    t0 = time.perf_counter()
    engine = Engine(cfg)
    await engine.async_start()
    elapsed = time.perf_counter() - t0
    await engine.async_stop()
    return elapsed


def main() -> None:
    """Run the interleaved benchmark and print a table with the target ratios."""
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", default="CPU")
    args = p.parse_args()
    model = default_model_path()
    if not model.is_file():
        build_default()
    shots = frames()
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as cache:
        tput_cfg = make_config(args.device, "THROUGHPUT", cache)
        lat_cfg = make_config(args.device, "LATENCY", cache)
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds} ...", flush=True)
            runs.setdefault("benchmark_app THROUGHPUT", []).append(
                benchmark_app(model, args.device, "throughput", args.seconds)
            )
            for size, frame in shots.items():
                runs.setdefault(f"engine THROUGHPUT {size}", []).append(
                    asyncio.run(engine_run(tput_cfg, frame, args.seconds, None))
                )
            runs.setdefault("benchmark_app LATENCY", []).append(
                benchmark_app(model, args.device, "latency", args.seconds)
            )
            for size, frame in shots.items():
                runs.setdefault(f"engine LATENCY {size} (1 caller)", []).append(
                    asyncio.run(engine_run(lat_cfg, frame, args.seconds, 1))
                )
    with tempfile.TemporaryDirectory() as fresh:
        cold = asyncio.run(start_time(make_config(args.device, "THROUGHPUT", fresh)))
        warm = asyncio.run(start_time(make_config(args.device, "THROUGHPUT", fresh)))
    med = {k: {m: statistics.median(r[m] for r in v) for m in v[0]} for k, v in runs.items()}
    print(f"\n{'run (median of rounds)':40} {'FPS':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, m in med.items():
        print(f"{name:40} {m['fps']:8.1f} {m['p50']:8.1f} {m.get('p99', float('nan')):8.1f}")
    ba_fps, ba_p50 = med["benchmark_app THROUGHPUT"]["fps"], med["benchmark_app LATENCY"]["p50"]
    e_fps = med["engine THROUGHPUT 640x480"]["fps"]
    e_p50 = med["engine LATENCY 640x480 (1 caller)"]["p50"]
    print(f"\nthroughput ratio (640x480): {e_fps / ba_fps:.3f}  (target >= 0.93)")
    print(
        f"p50 latency (640x480, 1 caller): {e_p50:.1f} ms vs limit 1.1 x {ba_p50:.1f} + 2 = "
        f"{1.1 * ba_p50 + 2:.1f} ms  (ratio {e_p50 / ba_p50:.3f})"
    )
    print(f"start: cold {cold:.2f} s, warm (model cache) {warm:.2f} s")


if __name__ == "__main__":
    main()
