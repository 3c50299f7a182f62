"""`edge-agent bench`: WebSocket clients against a server, next to benchmark_app on the same IR, in one run.

By default it starts its own servers (`edge-agent serve` in a subprocess on 127.0.0.1): one with the LATENCY
hint for the 1-client figure and one with the THROUGHPUT hint for more clients, as benchmark_app's two
figures are measured; rounds are interleaved with benchmark_app because edge boxes are noisy. With --url it
drives an already running server instead (its own hint for every figure). Frames are a mix of real
photographs of different sizes, sent round-robin (--images DIR for your own).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from ..allocator import keep_reads_on_heap
from . import bench_report as report
from .bench_clients import Run, drive, idle_sessions, overload, summarise
from .bench_photos import NoPhotos, Photo, describe, load_photos
from .bench_procs import Served, benchmark_app, server
from .deflate import SAMPLE_REPLY, deflate_report, synthetic_frame


async def engine_direct(
    config: str | None, hint: str, callers: int, seconds: float, photos: list[Photo]
) -> Run:
    """The same closed loop straight on an in-process Engine: what the streaming layer adds is the difference."""
    from ..config import load_config
    from ..inference.engine import Engine

    loaded = load_config(Path(config) if config else None, overrides={("engine", "performance_hint"): hint})
    engine = Engine(loaded.config)
    await engine.async_start()
    run = Run(0.0, 0.0, 0.0)
    start = time.perf_counter()

    async def caller(first: int) -> int:
        done, k = 0, first
        while (now := time.perf_counter()) < start + 1.0 + seconds:
            await engine.detect(photos[k % len(photos)].data)
            k += 1
            if now >= start + 1.0:
                run.latencies.append((time.perf_counter() - now) * 1e3)
                done += 1
        return done

    try:
        return summarise(run, list(await asyncio.gather(*(caller(i) for i in range(callers)))), seconds)
    finally:
        await engine.async_stop()


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
    p.add_argument(
        "--images", metavar="DIR", help="send every JPEG in DIR, round-robin (default: a six-photo mix)"
    )
    p.add_argument("--image", metavar="FILE", help="send this one JPEG only")
    p.add_argument("--model", help="IR for benchmark_app (default: the one the config serves)")
    p.add_argument("--device", default="CPU", help="benchmark_app device (default CPU)")
    p.add_argument("--no-benchmark-app", action="store_true", help="skip the benchmark_app reference")
    p.add_argument("--no-engine", action="store_true", help="skip the in-process engine reference")
    p.add_argument(
        "--overload", action="store_true", help="3 cameras x 30 fps open loop, against a lone client's p50"
    )
    p.add_argument("--overload-clients", type=int, default=3, help="cameras of --overload (default 3)")
    p.add_argument("--overload-fps", type=float, default=30.0, help="frame rate of each camera (default 30)")
    p.add_argument("--stages", action="store_true", help="server CPU per frame outside inference, per stage")
    p.add_argument("--memory", action="store_true", help="RSS after start, per active and per idle session")
    p.add_argument("--idle", type=int, default=200, help="idle sessions of --memory (default 200)")
    p.add_argument(
        "--deflate", nargs="*", metavar="JPEG", help="only measure per-message deflate on these frames"
    )
    return p.parse_args(argv)


def _label(kind: str, n: int) -> str:
    return (
        f"ws {n} client{'s' if n > 1 else ''}" if kind == "ws" else f"engine {n} caller{'s' if n > 1 else ''}"
    )


def _ws_run(served: Served, n: int, seconds: float, photos: list[Photo], token: str | None) -> Run:
    loop0, _ = served.cpu()
    own0 = time.process_time()
    run = asyncio.run(drive(served.url, n, seconds, photos, token))
    loop1, _ = served.cpu()
    # Per answered frame (warm-up included in both counts): the server's event loop, and this bench's
    # clients, which take their CPU from the same cores as inference.
    run.loop_cpu_ms = (loop1 - loop0) * 1e3 / max(1, run.answered)
    run.client_cpu_ms = (time.process_time() - own0) * 1e3 / max(1, run.answered)
    return run


def _measure(args: argparse.Namespace, counts: list[int], photos: list[Photo]) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = {}
    for _ in range(args.rounds):
        for n in counts:
            hint = "LATENCY" if n == 1 else "THROUGHPUT"
            if args.url:
                run = asyncio.run(drive(args.url, n, args.seconds, photos, args.token))
            else:
                with server(hint, args.config) as served:
                    run = _ws_run(served, n, args.seconds, photos, None)
            runs.setdefault(_label("ws", n), []).append(run)
            if not args.no_engine:
                direct = asyncio.run(engine_direct(args.config, hint, n, args.seconds, photos))
                runs.setdefault(_label("engine", n) + " (no server)", []).append(direct)
        _reference(args, runs)
    return runs


def _reference(args: argparse.Namespace, runs: dict[str, list[Run]]) -> None:
    if args.no_benchmark_app:
        return
    model, precision = _served_model(args)
    for hint in ("latency", "throughput"):
        fps, median = benchmark_app(model, args.device, hint, max(5, int(args.seconds)), precision)
        runs.setdefault(f"benchmark_app {hint}", []).append(Run(fps, median, float("nan")))


def _overload(args: argparse.Namespace, photos: list[Photo]) -> None:
    rounds: list[report.OverloadRound] = []
    for _ in range(args.rounds):
        refs: dict[str, list[Run]] = {}
        if args.url:
            lone = asyncio.run(drive(args.url, 1, args.seconds, photos, args.token))
            cams = asyncio.run(
                overload(args.url, args.overload_clients, args.overload_fps, args.seconds, photos, args.token)
            )
        else:
            with server("THROUGHPUT", args.config) as served:
                lone = asyncio.run(drive(served.url, 1, args.seconds, photos))
                cams = asyncio.run(
                    overload(served.url, args.overload_clients, args.overload_fps, args.seconds, photos)
                )
        _reference(args, refs)
        rounds.append(report.OverloadRound(lone, cams, refs, args.seconds))
        report.overload_round(rounds[-1])
    report.overload_summary(rounds)


def _memory(args: argparse.Namespace, photos: list[Photo]) -> None:
    with server("THROUGHPUT", args.config) as served:
        time.sleep(1.0)
        start = served.rss()
        asyncio.run(drive(served.url, 1, 3.0, photos))  # every photo once: buffers grown, caches warm
        warm = served.rss()
        active = 8
        with_active = asyncio.run(_rss_while_active(served, active, photos))
        before_idle = served.rss()
        accepted, with_idle = asyncio.run(_rss_while_idle(served, args.idle))
    report.memory(start, warm, with_active, active, before_idle, with_idle, accepted)


async def _rss_while_active(served: Served, clients: int, photos: list[Photo]) -> int:
    task = asyncio.ensure_future(drive(served.url, clients, 4.0, photos))
    await asyncio.sleep(3.0)
    rss = served.rss()
    await task
    return rss


async def _rss_while_idle(served: Served, count: int) -> tuple[int, int]:
    async with idle_sessions(served.url, count) as accepted:
        await asyncio.sleep(1.0)
        return accepted, served.rss()


def _served_model(args: argparse.Namespace) -> tuple[Path, str]:
    """The IR and inference precision the bench's servers run (--model overrides the IR)."""
    from ..config import load_config
    from ..inference.models.loader import resolve_model_path

    cfg = load_config(Path(args.config) if args.config else None).config
    model = Path(args.model) if args.model else resolve_model_path(cfg.model.path, cfg.model.precision)
    return model, cfg.engine.inference_precision


def main(argv: list[str]) -> int:
    """Entry point of `edge-agent bench`; prints its tables."""
    args = _parse(argv)
    keep_reads_on_heap()  # the clients read replies the way the server reads frames (see allocator.py)
    if args.deflate is not None:
        frames = {Path(f).name: Path(f).read_bytes() for f in args.deflate}
        deflate_report({**frames, "synthetic 640x480": synthetic_frame(), "detections reply": SAMPLE_REPLY})
        return 0
    try:
        photos = load_photos(args.images, args.image)
    except NoPhotos as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print(f"frames: {describe(photos)}")
    if not args.no_benchmark_app:
        model, precision = _served_model(args)
        print(f"benchmark_app model: {model} (inference precision {precision})")
    counts = [int(c) for c in args.clients.split(",") if c.strip()]
    try:
        if args.stages:
            from . import bench_stages

            bench_stages.report(asyncio.run(bench_stages.measure(args.config, photos)))
        elif args.memory:
            _memory(args, photos)
        elif args.overload:
            _overload(args, photos)
        else:
            report.closed_loop(_measure(args, counts, photos), counts)
    except (RuntimeError, OSError, subprocess.CalledProcessError, aiohttp.ClientError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    return 0
