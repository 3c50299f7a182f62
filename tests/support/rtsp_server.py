"""A real RTSP server for tests: GStreamer's gst-rtsp-server (Debian packages), run by the system Python.

It loops JPEG photographs (frames-dir/%03d.jpg), encodes them to H.264 with x264 in real time and serves
them at rtsp://127.0.0.1:PORT/cam, optionally behind basic auth. Prints `READY <port>` when listening; with
--stamps, `FRAME <n> <unix time>` as each encoded frame leaves the encoder (for latency figures). It stops
when its stdin closes (the test ended or died) or after --lifetime seconds.

Run: /usr/bin/python3 tests/support/rtsp_server.py --frames-dir D [--fps 10] [--size 640x480] [--user U --password P]
This file imports nothing of the project: it runs outside the venv.
"""

from __future__ import annotations

import argparse
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def pipeline(frames_dir: str, fps: int, width: int, height: int) -> str:
    """Photos -> real-time clock (identity sync) -> I420 -> x264 zerolatency -> RTP."""
    return (
        f"( multifilesrc location={frames_dir}/%03d.jpg loop=true caps=image/jpeg,framerate={fps}/1 "
        "! jpegdec ! identity sync=true ! videoconvert ! videoscale "
        f"! video/x-raw,format=I420,width={width},height={height} "
        f"! x264enc name=enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} bframes=0 threads=1 "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames-dir", required=True)
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--user")
    ap.add_argument("--password")
    ap.add_argument("--stamps", action="store_true")
    ap.add_argument("--lifetime", type=float, default=600.0)
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(pipeline(args.frames_dir, args.fps, width, height))
    factory.set_shared(False)
    if args.stamps:
        factory.connect("media-configure", _stamp_frames)
    if args.user:
        _basic_auth(server, factory, args.user, args.password or "")
    server.get_mount_points().add_factory("/cam", factory)
    loop = GLib.MainLoop()
    server.attach(None)
    print(f"READY {server.get_bound_port()}", flush=True)
    GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_HUP | GLib.IO_IN, lambda *_: loop.quit() or False)
    GLib.timeout_add(int(args.lifetime * 1000), lambda: loop.quit() or False)
    loop.run()


def _basic_auth(
    server: GstRtspServer.RTSPServer, factory: GstRtspServer.RTSPMediaFactory, user: str, password: str
) -> None:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    server.set_auth(auth)
    factory.add_role_from_structure(
        Gst.Structure.new_from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
        )
    )


def _stamp_frames(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
    enc = media.get_element().get_by_name("enc")
    count = [0]

    def probe(_pad: Gst.Pad, _info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        count[0] += 1
        print(f"FRAME {count[0]} {time.time():.6f}", flush=True)
        return Gst.PadProbeReturn.OK

    enc.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, probe)


if __name__ == "__main__":
    main()
