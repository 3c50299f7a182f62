"""RTSP, V4L2 and file cameras through PyAV: one long-lived thread per camera connects, decodes and reconnects.

FFmpeg decodes with its own threads; only the frames the pacer lets through are converted to RGB and handed
to the loop (newest wins), so a 25 fps camera on a box that infers 10 fps never builds a queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import av.container

from ...config.cameras import CameraConfig
from ...inference.contract import PixelFrame
from .feed import Feed, Pacer, StreamError
from .status import Backoff, StreamInfo

log = logging.getLogger(__name__)
DECODER_THREADS = 2


def open_options(cam: CameraConfig) -> tuple[dict[str, str], str | None]:
    """FFmpeg options and input format for a camera."""
    if cam.kind == "rtsp":
        # A short probe (the SDP already names the codec). Not `fflags=nobuffer`: measured, it made the
        # reader fall seconds behind a 720p25 stream.
        return {
            "rtsp_transport": cam.rtsp_transport,
            "max_delay": "500000",
            "analyzeduration": "500000",
        }, None
    if cam.kind == "device":
        return {}, "v4l2"
    return {}, None


def open_container(cam: CameraConfig) -> av.container.InputContainer:
    """Connect (bounded by the camera's timeout, for connect and for each read)."""
    options, fmt = open_options(cam)
    return av.open(cam.connect_url(), format=fmt, options=options, timeout=(cam.timeout, cam.timeout))


def stream_info(stream: Any) -> StreamInfo:
    """Codec, size and nominal rate of a video stream."""
    ctx = stream.codec_context
    rate: Fraction | None = stream.average_rate or stream.guessed_rate
    return StreamInfo(
        ctx.name, ctx.width or None, ctx.height or None, round(float(rate), 2) if rate else None
    )


HTTP_REASONS = (
    (av.error.HTTPUnauthorizedError, "401", "401 Unauthorized"),
    (av.error.HTTPForbiddenError, "403", "403 Forbidden"),
    (av.error.HTTPNotFoundError, "404", "404 Not Found"),
)


def describe(exc: BaseException, cam: CameraConfig, started: bool) -> str:
    """A short reason for a failure, e.g. `401 Unauthorized`, `connection refused`, `stalled: …`."""
    if isinstance(exc, StreamError):
        return str(exc)
    if isinstance(exc, (av.error.ExitError, TimeoutError)):
        return (
            f"stalled: no frame for {cam.timeout:g} s" if started else f"no answer within {cam.timeout:g} s"
        )
    # strerror, never str(exc): FFmpeg's message repeats the URL, password included.
    text = str(getattr(exc, "strerror", None) or type(exc).__name__)
    for kind, status, reason in HTTP_REASONS:
        if isinstance(exc, kind) or status in text:
            return reason
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return text


class AvReader:
    """The camera's reader thread (started once, stopped once; reconnects happen inside it)."""

    def __init__(self, cam: CameraConfig, feed: Feed, on_exit: Callable[[], None]) -> None:
        self.cam = cam
        self.feed = feed
        self._on_exit = on_exit
        self._backoff = Backoff()
        self._frame_id = 0
        self.thread = threading.Thread(target=self._run, name=f"camera-{cam.id}", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self.thread.start()

    def _run(self) -> None:
        try:
            self._reconnect_loop()
        finally:
            self._on_exit()

    def _reconnect_loop(self) -> None:
        feed = self.feed
        while not feed.stopping.is_set():
            feed.report("connecting", f"connecting to {self.cam.display_url}")
            started = [False]
            try:
                self._session(started)
                if feed.stopping.is_set():
                    break
                error = "stream ended"
            except Exception as exc:  # every failure is a reason to retry; the thread never dies of one
                error = describe(exc, self.cam, started[0])
                if not isinstance(exc, (av.error.FFmpegError, StreamError, OSError)):
                    log.exception("camera %s: unexpected reader failure", self.cam.id)
            if feed.stopping.is_set():
                break
            delay = self._backoff.next()
            log.warning("camera %s: %s; retrying in %.0f s", self.cam.id, error, delay)
            feed.failed(error, delay)
            feed.stopping.wait(delay)

    def _session(self, started: list[bool]) -> None:
        """One connection: open, decode until it fails or we stop; files loop."""
        with open_container(self.cam) as container:
            if not container.streams.video:
                raise StreamError("no video stream")
            stream = container.streams.video[0]
            # Frame threads delay each frame by one frame per extra thread (measured +45 ms at 25 fps): live
            # sources use slice threads; a file has no one waiting.
            stream.thread_type = "AUTO" if self.cam.kind == "file" else "SLICE"
            stream.thread_count = DECODER_THREADS
            info = stream_info(stream)
            pacer = Pacer(self.feed.interval)
            while True:
                self._decode(container, stream, pacer, info, started)
                if self.cam.kind != "file" or self.feed.stopping.is_set():
                    return
                container.seek(0)  # a file loops (demos, tests)

    def _decode(
        self, container: Any, stream: Any, pacer: Pacer, info: StreamInfo, started: list[bool]
    ) -> None:
        feed, status = self.feed, self.feed.status
        clock: tuple[float, float] | None = None  # (wall, pts) of the first frame: a file plays in real time
        for frame in container.decode(stream):
            if feed.stopping.is_set():
                return
            if not started[0]:
                started[0] = True
                self._backoff.reset()
                info.width, info.height = frame.width, frame.height
                feed.report("streaming", f"{info.codec} {frame.width}x{frame.height}", info)
            if self.cam.kind == "file" and frame.time is not None:
                clock = self._pace_file(clock, float(frame.time))
            self._frame_id += 1
            at = time.monotonic()
            status.decoded(at)
            if pacer.due(at):
                pixels = frame.to_ndarray(format="rgb24")
                feed.offer(PixelFrame(pixels), self._frame_id, time.time())

    def _pace_file(self, clock: tuple[float, float] | None, pts: float) -> tuple[float, float]:
        if clock is None:
            return time.monotonic(), pts
        wait = clock[0] + (pts - clock[1]) - time.monotonic()
        if wait > 0:
            self.feed.stopping.wait(wait)
        return clock
