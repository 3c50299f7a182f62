"""The `edge-agent` command line."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__
from .config import DEFAULT_CONFIG_PATH, LoadedConfig, effective_values, load_config
from .errors import ConfigError, EdgeAgentError

OWN_PARSERS = ("discover", "bench", "cameras")  # tools with their own argument parsers


def _config_path(arg: str | None) -> Path | None:
    if arg:
        return Path(arg)
    env = os.environ.get("EDGE_AGENT_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def _load(args: argparse.Namespace, overrides: dict[tuple[str, ...], Any] | None = None) -> LoadedConfig:
    return load_config(_config_path(getattr(args, "config", None)), overrides=overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    """Load, bind the port, warm up and serve until SIGTERM/SIGINT."""
    from .allocator import keep_reads_on_heap
    from .app import create_app
    from .appliance import async_serve, bind_sockets, make_ready_printer
    from .appliance.logs import quiet_peer_noise

    overrides: dict[tuple[str, ...], Any] = {}
    if args.host:
        overrides[("server", "host")] = args.host
    if args.port is not None:
        overrides[("server", "port")] = args.port
    loaded = _load(args, overrides)
    cfg = loaded.config
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_peer_noise()
    # Before the model compiles: a busy port or a foreign address is one line, not a traceback a minute later.
    socks = bind_sockets(cfg.server.host, cfg.server.port)
    keep_reads_on_heap()
    app = create_app(loaded)
    asyncio.run(
        async_serve(
            app,
            socks,
            cfg.server.shutdown_timeout,
            make_ready_printer(app),
            # Also how long a connection may take to send its request headers (aiohttp's default is 75 s).
            keepalive_timeout=cfg.server.body_timeout,
        )
    )
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    """List OpenVINO devices and show what 'auto' picks and why."""
    import openvino as ov

    from .inference.engine import Engine

    core = ov.Core()
    for dev in core.available_devices:
        try:
            name = core.get_property(dev, "FULL_DEVICE_NAME")
        except RuntimeError:
            name = "?"
        print(f"{dev:8} {name}")
    loaded = _load(args, {("engine", "device"): "auto"})

    async def pick() -> None:
        engine = Engine(loaded.config, core)
        await engine.async_start()
        choice = engine.device
        assert choice is not None
        print(f"auto picks: {choice.selected} (executing on {','.join(choice.executing)}): {choice.reason}")
        await engine.async_stop()

    asyncio.run(pick())
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    """Run the detector on one JPEG file and print what it found."""
    from .inference.contract import DetectParams
    from .inference.engine import Engine

    loaded = _load(args)
    data = Path(args.image).read_bytes()

    async def run() -> list[dict[str, Any]]:
        engine = Engine(loaded.config)
        await engine.async_start()
        try:
            result = await engine.detect(data, DetectParams(confidence=args.confidence))
        finally:
            await engine.async_stop()
        return [d.to_json() for d in result.detections]

    detections = asyncio.run(run())
    if args.json:
        print(json.dumps(detections))
    else:
        for d in detections:
            x1, y1, x2, y2 = d["box"]
            print(f"{d['label']:<14} {d['confidence']:.2f}  box=[{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
        if not detections:
            print("no detections")
    return 0


def cmd_model(args: argparse.Namespace) -> int:
    """Build, import or inspect models."""
    from .tools import model as tools

    if args.model_cmd == "build-default":
        print(tools.build_default(Path(args.output) if args.output else None))
    elif args.model_cmd == "quantize":
        return _quantize(args)
    elif args.model_cmd == "import-darknet":
        print(tools.import_files(Path(args.cfg), Path(args.weights), Path(args.names), Path(args.output)))
    else:
        print(json.dumps(tools.inspect(args.path), indent=2))
    return 0


def _quantize(args: argparse.Namespace) -> int:
    from .tools.quantize import GateFailed, default_gate_images, from_frames, jpeg_files, quantize

    config = _load(args).config
    gate_dir = Path(args.gate_images) if args.gate_images else default_gate_images()
    if args.from_frames:
        calib, gate = from_frames(Path(config.calibration.dir), gate_dir)
    else:
        calib, gate = jpeg_files(Path(args.images)), jpeg_files(gate_dir)
    output = Path(args.output) if args.output else None
    result = quantize(config, args.model, calib, gate, output, args.recipe)
    if result.output is None:
        raise GateFailed(f"{result.report.summary()}; the INT8 model was not written")
    print(result.report.summary())
    print(result.output)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    """Validate the configuration, or show effective values with their sources."""
    if args.config_cmd == "default":
        from .config.doc import render_default_toml

        print(render_default_toml(), end="")
        return 0
    loaded = _load(args)
    for line in loaded.warnings:
        print(f"config warning: {line}", file=sys.stderr)
    if args.config_cmd == "check":
        print(f"config OK ({loaded.path or 'built-in defaults'})")
        return 0
    for key, value, source in effective_values(loaded):
        print(f"{key} = {json.dumps(value)}    # {source}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Print or rotate the API token (server.token_file)."""
    from .tools import token

    path = Path(args.file) if args.file else token.token_path(_config_path(args.config), dict(os.environ))
    if args.token_cmd == "show":
        print(token.show(path))
        return 0
    print(token.rotate(path))
    if not args.no_reload and token.reload_service():
        print(f"{token.UNIT} reloaded: the old token no longer works", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    p = argparse.ArgumentParser(prog="edge-agent", description="Real-time hazard detection for edge boxes.")
    p.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", help=f"TOML config file (default {DEFAULT_CONFIG_PATH} if present)")
        return sp

    s = with_config(sub.add_parser("serve", help="serve the API"))
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.set_defaults(func=cmd_serve)
    with_config(sub.add_parser("devices", help="list devices and the automatic choice")).set_defaults(
        func=cmd_devices
    )
    d = with_config(sub.add_parser("detect", help="detect objects in one JPEG"))
    d.add_argument("image")
    d.add_argument("--json", action="store_true", help="print a JSON list of detections")
    d.add_argument("--confidence", type=float, help="minimum confidence (default from config)")
    d.set_defaults(func=cmd_detect)
    m = sub.add_parser("model", help="build, import or inspect models")
    msub = m.add_subparsers(dest="model_cmd", required=True)
    b = msub.add_parser("build-default", help="import the shipped YOLOv3-tiny COCO model to IR")
    b.add_argument("--output", help="output .xml (default: the built-in model path)")
    i = msub.add_parser("import-darknet", help="import a Darknet .cfg/.weights pair to IR")
    for name in ("cfg", "weights", "names", "output"):
        i.add_argument(f"--{name}", required=True)
    msub.add_parser("inspect", help="show inputs, outputs, family and labels").add_argument("path")
    q = with_config(msub.add_parser("quantize", help="INT8 post-training quantization with an accuracy gate"))
    q.add_argument("model", nargs="?", default="default", help="model file, or 'default' (the built-in one)")
    source = q.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="folder of JPEG calibration images")
    source.add_argument(
        "--from-frames",
        action="store_true",
        help="calibrate on the frames kept on site (calibration.keep_frames)",
    )
    q.add_argument(
        "--gate-images", help="folder of held-out JPEG photos for the gate (default: the shipped ones)"
    )
    q.add_argument("--output", help="output .xml (default: <stem>-int8.xml beside the model)")
    q.add_argument(
        "--recipe",
        choices=["auto", "performance", "accurate"],
        default="auto",
        help="auto (default): the fastest recipe that passes the gate; performance: NNCF's performance "
        "preset; accurate: mixed preset with the detection heads in float",
    )
    m.set_defaults(func=cmd_model)
    c = with_config(sub.add_parser("config", help="check or show the configuration"))
    c.add_argument(
        "config_cmd",
        choices=["check", "show", "default"],
        help="check: validate; show: effective values and sources; default: print the documented defaults",
    )
    c.set_defaults(func=cmd_config)
    t = with_config(sub.add_parser("token", help="print or rotate the API token (server.token_file)"))
    t.add_argument("token_cmd", choices=["show", "rotate"], help="show: print it; rotate: a new one")
    t.add_argument("--file", help="token file (default: server.token_file, else /etc/edge-agent/token)")
    t.add_argument("--no-reload", action="store_true", help="rotate: do not reload edge-agent.service")
    t.set_defaults(func=cmd_token)
    # Listed for --help only: main() hands their arguments to their own parsers.
    sub.add_parser("bench", help="benchmark a running server over WebSocket (bench --help)", add_help=False)
    sub.add_parser("discover", help="find agents on the LAN over mDNS (discover --help)", add_help=False)
    sub.add_parser(
        "cameras", help="list a running agent's cameras, or probe a URL (cameras --help)", add_help=False
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a subcommand; expected errors print one clear message, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] and argv[0] in OWN_PARSERS:  # these have their own parsers: hand them every argument
            tool = importlib.import_module(f".tools.{argv[0]}", __package__)
            return int(tool.main(argv[1:]))
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except ConfigError as exc:
        for key, reason in exc.errors:
            print(f"config error: {key}: {reason}", file=sys.stderr)
        return 2
    except EdgeAgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
