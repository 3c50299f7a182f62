"""HTTP cameras on the event loop with aiohttp: MJPEG (multipart/x-mixed-replace) or a polled JPEG snapshot.

The JPEG bytes go to the engine exactly as the camera sent them: no decode and re-encode on the way.
"""

from __future__ import annotations

import asyncio
import base64
import time

import aiohttp
from aiohttp import hdrs

from ...config.cameras import CameraConfig
from ...errors import FrameError
from ...inference.frames import check_jpeg
from .feed import Feed, Pacer, StreamError
from .status import Backoff, StreamInfo


class HttpReader:
    """One task per camera: connect, read parts (or poll), reconnect with backoff."""

    def __init__(self, cam: CameraConfig, feed: Feed, max_bytes: int, max_pixels: int) -> None:
        self.cam = cam
        self.feed = feed
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self._frame_id = 0
        self._started = False
        creds = cam.credentials()
        token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode() if creds else None
        self._headers = {hdrs.AUTHORIZATION: f"Basic {token}"} if token else {}
        self._url = cam.without_credentials()

    async def async_run(self) -> None:
        """Until cancelled: connect, stream, and retry after failures."""
        backoff = Backoff()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.cam.timeout, sock_read=self.cam.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                self.feed.report("connecting", f"connecting to {self.cam.display_url}")
                self._started = False
                try:
                    await self._session(http, backoff)
                    error = "stream ended"
                except StreamError as exc:
                    error = str(exc)
                except TimeoutError:
                    error = f"stalled: no frame for {self.cam.timeout:g} s" if self._started else "no answer"
                except aiohttp.ClientError as exc:
                    error = _client_error(exc)
                delay = backoff.next()
                self.feed.failed(error, delay)
                await asyncio.sleep(delay)

    async def _session(self, http: aiohttp.ClientSession, backoff: Backoff) -> None:
        async with http.get(self._url, headers=self._headers, allow_redirects=False) as resp:
            if resp.status != 200:
                raise StreamError(f"{resp.status} {resp.reason}")
            ctype = resp.headers.get(hdrs.CONTENT_TYPE, "")
            if ctype.startswith("multipart/"):
                await self._multipart(resp, backoff)
                return
            if not ctype.startswith("image/jpeg"):
                raise StreamError(f"content type {ctype!r}: want multipart/x-mixed-replace or image/jpeg")
            self._frame(await self._body(resp.content), backoff, "jpeg snapshot")
        await self._poll(http)

    async def _multipart(self, resp: aiohttp.ClientResponse, backoff: Backoff) -> None:
        reader = aiohttp.MultipartReader(resp.headers, resp.content)
        pacer = Pacer(self.feed.interval)
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader):
                raise StreamError("nested multipart in an MJPEG stream")
            data = bytearray()
            while chunk := await part.read_chunk(65536):
                data += chunk
                if len(data) > self.max_bytes:
                    raise StreamError(f"MJPEG part above {self.max_bytes} bytes")
            if pacer.due(time.monotonic()) or not self._started:
                self._frame(bytes(data), backoff, "mjpeg")
            else:
                self.feed.status.decoded(time.monotonic())

    async def _poll(self, http: aiohttp.ClientSession) -> None:
        """Snapshot URL: one GET per frame, at the camera's pace."""
        while True:
            await asyncio.sleep(self.feed.interval())
            async with http.get(self._url, headers=self._headers, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise StreamError(f"{resp.status} {resp.reason}")
                self._frame(await self._body(resp.content), None, "jpeg snapshot")

    async def _body(self, content: aiohttp.StreamReader) -> bytes:
        data = await content.read(self.max_bytes + 1)
        while len(data) <= self.max_bytes and (more := await content.read(self.max_bytes + 1 - len(data))):
            data += more
        if len(data) > self.max_bytes:
            raise StreamError(f"snapshot above {self.max_bytes} bytes")
        return data

    def _frame(self, data: bytes, backoff: Backoff | None, codec: str) -> None:
        self._frame_id += 1
        self.feed.status.decoded(time.monotonic())
        if not self._started:
            self._started = True
            if backoff is not None:
                backoff.reset()
            try:
                width, height = check_jpeg(data, self.max_bytes, self.max_pixels)
            except FrameError as exc:
                raise StreamError(f"not a usable JPEG: {exc}") from None
            self.feed.report("streaming", f"{codec} {width}x{height}", StreamInfo(codec, width, height))
        self.feed.offer(data, self._frame_id, time.time())


def _client_error(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected"
    return f"{type(exc).__name__}: {exc}"
