"""Connect to a camera once, through the same readers the agent uses, and take its first frame."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from ...config.cameras import CameraConfig
from ...inference.contract import Frame, JpegFrame
from ...inference.frames import check_jpeg
from .av_reader import AvReader
from .feed import StreamError, loop_call
from .http_reader import HttpReader
from .status import CameraStatus, State, StreamInfo


@dataclass(slots=True)
class Probed:
    """What one connection showed: the stream and its first frame."""

    info: StreamInfo
    frame: Frame
    seconds: float


class ProbeFeed:
    """A Feed that stops the reader at its first frame or first failure."""

    def __init__(self, loop: asyncio.AbstractEventLoop, max_bytes: int, max_pixels: int) -> None:
        self.status = CameraStatus()
        self.stopping = threading.Event()
        self.info = StreamInfo()
        self.result: asyncio.Future[Frame] = loop.create_future()
        self._loop = loop
        self._limits = (max_bytes, max_pixels)

    def report(self, state: State, reason: str, info: StreamInfo | None = None) -> None:
        """Keep the stream's description."""
        if info is not None:
            self.info = info

    def failed(self, error: str, delay: float) -> None:
        """The first failure is the answer."""
        self.stopping.set()
        loop_call(self._loop, lambda: self._resolve(None, error))

    def interval(self) -> float:
        """Every frame is welcome."""
        return 0.0

    def offer(self, frame: Frame | bytes, frame_id: int, timestamp: float) -> None:
        """The first frame is the answer."""
        self.stopping.set()
        if isinstance(frame, bytes):
            width, height = check_jpeg(frame, *self._limits)
            frame = JpegFrame(frame, width, height)
        checked = frame
        loop_call(self._loop, lambda: self._resolve(checked, None))

    def _resolve(self, frame: Frame | None, error: str | None) -> None:
        if self.result.done():
            return
        if frame is not None:
            self.result.set_result(frame)
        else:
            self.result.set_exception(StreamError(error or "no frame"))


async def async_probe(cam: CameraConfig, max_bytes: int, max_pixels: int) -> Probed:
    """Connect once and return the stream's description and first frame (StreamError with the reason)."""
    loop = asyncio.get_running_loop()
    feed = ProbeFeed(loop, max_bytes, max_pixels)
    start = time.monotonic()
    done = asyncio.Event()
    task: asyncio.Task[None] | None = None
    if cam.kind == "http":
        task = loop.create_task(HttpReader(cam, feed, max_bytes, max_pixels).async_run())
    else:
        AvReader(cam, feed, lambda: loop_call(loop, done.set)).start()
    try:
        async with asyncio.timeout(cam.timeout * 2 + 5):
            frame = await feed.result
    except TimeoutError:
        raise StreamError(f"{cam.display_url}: no frame within {cam.timeout * 2 + 5:g} s") from None
    except StreamError as exc:
        raise StreamError(f"{cam.display_url}: {exc}") from None
    finally:
        feed.stopping.set()
        if task is not None:
            task.cancel()
        else:
            await done.wait()
    return Probed(feed.info, frame, time.monotonic() - start)
