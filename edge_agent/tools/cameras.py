"""`edge-agent cameras`: list a running agent's cameras; `edge-agent cameras probe URL`: check a camera URL."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config import Config, load_config
from ..config.cameras import CameraConfig
from ..errors import ConfigError, EdgeAgentError
from ..inference.contract import DetectParams, Result
from ..inference.engine import Engine
from ..sources.cameras.probe import async_probe


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="edge-agent cameras", description="Cameras of a running agent, or probe one."
    )
    sub = p.add_subparsers(dest="cmd")
    ls = sub.add_parser("list", help="cameras of a running agent with their state (the default)")
    pr = sub.add_parser("probe", help="connect to a camera URL once: codec, size, fps and detections")
    pr.add_argument("url", help="rtsp://, http(s)://, /dev/videoN or a video file")
    pr.add_argument("--timeout", type=float, default=10.0, help="seconds to connect (default 10)")
    pr.add_argument("--transport", choices=["tcp", "udp"], default="tcp", help="RTSP transport")
    pr.add_argument("--password-file", help="file holding the password of the user in the URL")
    pr.add_argument("--config", help="config for the detector (default: built-in)")
    for sp in (p, ls):
        sp.add_argument("--url", default="http://127.0.0.1:8080", help="agent base URL")
        sp.add_argument("--token", help="bearer token when the agent has server.token")
        sp.add_argument("--json", action="store_true", help="print the JSON of /v1/cameras")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    """Run `cameras [list]` or `cameras probe URL`."""
    args = _parse(argv)
    if args.cmd == "probe":
        logging.getLogger("edge_agent.sources.cameras").setLevel(logging.ERROR)  # one error line is enough
        return probe(args)
    return listing(args)


def listing(args: argparse.Namespace) -> int:
    """Print a running agent's cameras."""
    req = urllib.request.Request(args.url.rstrip("/") + "/v1/cameras")
    if args.token:
        req.add_header("Authorization", f"Bearer {args.token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            cameras: list[dict[str, Any]] = json.load(resp)["cameras"]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise EdgeAgentError(f"cannot read {args.url}/v1/cameras: {exc}") from None
    if args.json:
        print(json.dumps(cameras, indent=2))
        return 0
    if not cameras:
        print("no cameras configured")
    for c in cameras:
        print(_row(c))
    return 0


def _row(c: dict[str, Any]) -> str:
    size = "x".join(map(str, c.get("resolution") or [])) or "-"
    fps = f"{c.get('source_fps', 0):.1f}->{c.get('processed_fps', 0):.1f} fps"
    age = c.get("last_frame_age_s")
    extra = f"age {age:.1f}s" if age is not None else ""
    line = f"{c['id']:<16} {c['state']:<10} {c.get('codec') or '-':<14} {size:<10} {fps:<18} {extra}"
    line += f"  reconnects {c.get('reconnects', 0)}  {c['url']}"
    if c["state"] != "streaming":
        line += f"\n{'':<16} {c.get('reason', '')}"
    return line


def probe(args: argparse.Namespace) -> int:
    """Connect once, print codec, size, fps and the detections on the first frame."""
    try:
        cam = CameraConfig(
            id="probe",
            url=args.url,
            timeout=args.timeout,
            rtsp_transport=args.transport,
            password_file=args.password_file,
        )
    except ValidationError as exc:
        raise ConfigError([(str(e["loc"][0]), e["msg"]) for e in exc.errors()]) from None
    loaded = load_config(None if args.config is None else Path(args.config))
    return asyncio.run(_probe(cam, loaded.config))


async def _probe(cam: CameraConfig, config: Config) -> int:
    eng = config.engine
    got = await async_probe(cam, eng.max_frame_bytes, eng.max_frame_pixels)
    i = got.info
    print(f"url      {cam.display_url}")
    print(f"codec    {i.codec}")
    print(f"size     {got.frame.width}x{got.frame.height}")
    print(f"fps      {i.fps if i.fps is not None else 'unknown'}")
    print(f"frame    first frame after {got.seconds:.2f} s")
    engine = Engine(config)
    await engine.async_start()
    try:
        result: Result = await engine.submit(got.frame, DetectParams())
    finally:
        await engine.async_stop()
    found = ", ".join(f"{d.label} {d.confidence:.2f}" for d in result.detections) or "nothing"
    print(f"detected {found} ({result.timings.total:.0f} ms)")
    return 0
