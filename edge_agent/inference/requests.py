"""One infer request with its preallocated buffers, and the frame (job) it is working on."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import openvino as ov

from .contract import DetectParams, Frame, JpegFrame
from .frames import FrameBuffers

INITIAL_DECODE_PIXELS = 1280 * 720


@dataclass(slots=True)
class Job:
    """One frame (or a probe, frame=None) on its way through a request, with its stage clocks (perf_counter)."""

    future: asyncio.Future[Any]  # resolves with a Result (or an EdgeAgentError as its exception)
    frame: Frame | None
    params: DetectParams
    arrived: float = field(default_factory=time.perf_counter)
    scale: float = 1.0
    dx: int = 0
    dy: int = 0
    t_decode: float = 0.0  # decode started
    t_pre: float = 0.0  # letterbox started
    t_start: float = 0.0  # inference started
    t_done: float = 0.0  # inference finished
    t_post: float = 0.0  # post-processing finished


@dataclass(slots=True)
class Slot:
    """One infer request with its preallocated input tensor and decode buffer."""

    request: ov.InferRequest
    image: np.ndarray  # [1, H, W, 4] u8 RGBX, shared with the request's input tensor
    buffers: FrameBuffers
    job: Job | None = None

    @classmethod
    def create(cls, compiled: ov.CompiledModel) -> Slot:
        """A new request whose input tensor shares memory with a preallocated array."""
        request = compiled.create_infer_request()
        image = np.zeros(tuple(compiled.input(0).get_shape()), np.uint8)
        request.set_input_tensor(ov.Tensor(image, shared_memory=True))
        return cls(request, image, FrameBuffers(INITIAL_DECODE_PIXELS))

    def prepare(self, job: Job) -> None:
        """Worker thread: decode (or copy pixels) and letterbox into the input tensor, then start inference."""
        frame = job.frame
        assert frame is not None
        job.t_decode = time.perf_counter()
        in_h, in_w = self.image.shape[1:3]
        if isinstance(frame, JpegFrame):
            decoded = self.buffers.decode_into(frame.data, frame.width, frame.height, in_w, in_h)
        else:
            decoded = self.buffers.load_pixels(frame.pixels)
        job.t_pre = time.perf_counter()
        scale, job.dx, job.dy = self.buffers.letterbox_into(decoded, self.image)
        job.scale = scale * decoded.shape[1] / frame.width
        job.t_start = time.perf_counter()
        self.request.start_async()
