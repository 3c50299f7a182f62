"""Which of our functions one binary WebSocket frame passes, and on which threads (prints; no asserts).

Runs the real app in-process on 127.0.0.1, warms it up, then profiles exactly one frame from its arrival on
the socket to its reply: every Python function under edge_agent/ that runs on the loop, on the engine's worker
thread and on OpenVINO's completion thread. Usage: .venv/bin/python tests/perf/trace_frame.py [photo.jpg]
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from edge_agent.app import create_app
from edge_agent.config import load_config
from edge_agent.runtime import AGENT

PACKAGE = str(Path(__file__).resolve().parents[2] / "edge_agent")
Calls = dict[str, list[str]]


def profiler(calls: Calls, thread: str) -> Callable[[FrameType, str, Any], None]:
    """A sys.setprofile hook recording each first call of a function of ours, in order."""
    seen: list[str] = calls.setdefault(thread, [])

    def hook(frame: FrameType, event: str, _arg: Any) -> None:
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(PACKAGE):
            name = f"{Path(code.co_filename).relative_to(PACKAGE)}:{code.co_qualname}"
            if name not in seen:
                seen.append(name)

    return hook


async def main(photo: Path) -> None:
    """Serve, warm up, trace one frame, print the functions per thread."""
    overrides: dict[tuple[str, ...], Any] = {
        ("mdns", "enabled"): False,
        ("systemd", "watchdog_probe_interval"): 3600.0,
    }
    app = create_app(load_config(None, environ={}, overrides=overrides))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    data = photo.read_bytes()
    calls: Calls = {}
    tracing = threading.Event()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(server.make_url("/stream/detection?client_id=trace")) as ws,
        ):
            await ws.receive_json()
            for _ in range(3):  # warm-up: caches, threads, first-call paths
                await ws.send_bytes(data)
                await ws.receive_json()
            engine = app[AGENT].engine
            original = engine._on_done

            def traced_on_done(slot: Any) -> None:  # OpenVINO's completion thread
                if tracing.is_set():
                    sys.setprofile(profiler(calls, "openvino callback"))
                original(slot)
                sys.setprofile(None)

            for slot in engine._slots:
                slot.request.set_callback(traced_on_done, slot)
            worker = engine._executor
            assert worker is not None
            worker_hook = profiler(calls, "engine worker")
            for _ in range(2):  # the pool's threads exist already: install the hook in each
                worker.submit(sys.setprofile, worker_hook).result()
            tracing.set()
            sys.setprofile(profiler(calls, "event loop"))
            await ws.send_bytes(data)
            reply = await ws.receive_json()
            sys.setprofile(None)
            tracing.clear()
            for _ in range(2):
                worker.submit(sys.setprofile, None).result()
            for slot in engine._slots:
                slot.request.set_callback(engine._on_done, slot)
    finally:
        await server.close()
    total = 0
    for thread, names in calls.items():
        print(f"{thread}: {len(names)} functions")
        for name in names:
            print(f"  {name}")
        total += len(names)
    print(
        f"total: {total} functions of ours; reply {reply['type']} with {len(reply.get('detections', []))} boxes"
    )


if __name__ == "__main__":
    default = Path(sys.prefix) / "share" / "test-photos" / "darknet" / "person.jpg"
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else default))
